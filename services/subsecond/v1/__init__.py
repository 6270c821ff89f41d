"""Code generated from proto/subsecond/v1 by `make proto`. Do not edit."""
