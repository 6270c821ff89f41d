"""The kit every subsecond service shares: settings, logging, the gRPC server shell, channels, metrics."""
