"""The embedded stack: fetch and start the real engines (tritonserver, ...) on one machine."""
