"""Tensor models served over the Open Inference Protocol (V2): repository, batching."""
