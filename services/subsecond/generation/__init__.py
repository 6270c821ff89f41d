"""The generation service: a streaming gRPC front to Triton serving TensorRT-LLM (or the embedded model)."""
