"""The router: admission, cache-or-generate, coalescing and streaming; the public entry point."""
