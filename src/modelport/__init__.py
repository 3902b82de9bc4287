"""Modelport: one governed, OpenAI-compatible endpoint in front of remote and local models."""

__version__ = "0.1.0"
