"""The embedding service: all-MiniLM-L6-v2 sentence embeddings, int8 ONNX on ONNX Runtime."""
