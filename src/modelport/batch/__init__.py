"""Batch serving: OpenAI's Files and Batches APIs over the store, and the runner that runs
each line once through the same use case as an interactive request."""
