"""Admission control: per-target concurrency caps and bounded, fair priority queues."""
