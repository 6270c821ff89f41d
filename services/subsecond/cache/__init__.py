"""The cache service: exact tier in Redis, semantic tier in Qdrant, with a false-hit guard."""
