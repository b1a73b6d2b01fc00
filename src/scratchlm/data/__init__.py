"""The data pipeline: read -> tokenize -> cache ids on disk -> batches. Nothing here imports models."""
