"""The OpenAI HTTP API: request parsing, error rendering, SSE scanning, the models list."""
