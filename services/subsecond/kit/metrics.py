"""Histogram buckets shared by the services' metrics.

Buckets are dense where the objectives are (a cache hit in milliseconds, a first chunk well
under a second), because a P95 is only as good as the buckets around it.
"""

# Cache hits, hops between services, vector search, Redis: 100 µs .. 1 s.
FAST_SECONDS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)
# Time to first chunk and whole requests, which include generation: 1 ms .. 60 s.
REQUEST_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    20.0,
    60.0,
)
# Sizes of micro-batches (texts).
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
