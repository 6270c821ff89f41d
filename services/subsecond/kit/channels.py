"""Client channels between services: bounded retries on UNAVAILABLE declared in the service config,
and round-robin over every address the target resolves to (in a cluster the inner services are
headless, so their name resolves to one address per pod; servers recycle connections every minute
so that clients resolve it again and reach new pods).

Reconnection is tuned for services that restart in about a second: gRPC's defaults (first retry
after 1 s, growing 1.6 times up to 120 s, each attempt allowed 20 s) left a service that was down
for 8 s unused for several seconds after it came back. Here a lost connection is retried after
0.1 s, then at most every 0.5 s, and an attempt that hangs (a stopped process still accepts TCP
connections in the kernel) is given up after 1 s."""

from __future__ import annotations

import json

import grpc

from subsecond.kit.callers import token_interceptors
from subsecond.kit.server import MAX_MESSAGE_BYTES
from subsecond.kit.settings import ServerSettings
from subsecond.kit.tls import channel_credentials
from subsecond.kit.tracing import TracedChannel

RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    # gRPC core's name for the least time one connection attempt is allowed (its "min connect timeout").
    ("grpc.min_reconnect_backoff_ms", 1000),
]


def retry_service_config(service_names: list[str], *, attempts: int = 3) -> str:
    """A service config retrying calls that failed with UNAVAILABLE before any response arrived."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": name} for name in service_names],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.01s",
                        "maxBackoff": "0.2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(target: str, service_names: list[str], caller: ServerSettings | None = None) -> grpc.aio.Channel:
    """A channel to another subsecond service, as the service whose settings ``caller`` are: TLS
    when it has ``TLS_CA_FILE`` (presenting its own certificate, for mutual TLS), and its service
    token on every call when it has ``SERVICE_TOKEN_FILE`` (kit.tls, kit.callers). Without
    ``caller``, a plaintext channel that names no caller."""
    options = [
        ("grpc.service_config", retry_service_config(service_names)),
        ("grpc.enable_retries", 1),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        *RECONNECT_OPTIONS,
    ]
    interceptors = token_interceptors(caller.callers) if caller is not None else []
    credentials = channel_credentials(caller.tls) if caller is not None else None
    if credentials is None:
        channel = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    else:
        channel = grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
    # Tracing outside the interceptors: the trace context goes out on every call, token or not (kit.tracing).
    return TracedChannel(channel)
