"""A health check over the service's own TLS: the chart's exec probe when the pods serve TLS.

Kubernetes' native gRPC probe speaks plaintext only, and a service with a certificate serves TLS
on its one port (health included), with client certificates required on the inner services. So
the kubelet runs ``python -m subsecond.kit.health_probe <service>`` in the container instead: it
reads the same ``SUBSECOND_<SERVICE>_*`` settings as the service (port, certificate, CA,
identity), dials the pod's own port on loopback presenting the pod's certificate, and asks
``grpc.health.v1`` for the server's overall status. Exit status 0 is SERVING; anything else
(NOT_SERVING while warming up or draining, a refused connection, a failed handshake, a timeout)
is 1, with the reason on stderr, where the kubelet records it in the probe's event.

The server's certificate names the service (its ``IDENTITY``), not 127.0.0.1, so the check
verifies the certificate against that name. Without ``TLS_CA_FILE`` it dials in plaintext, so the
same probe works for a service that has no certificate.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsecond.kit.settings import EnvReader, SettingsError, TlsSettings
from subsecond.kit.tls import channel_credentials

log = logging.getLogger(__name__)


def check(service: str, environ: Mapping[str, str], timeout: float) -> str | None:
    """None when ``service`` on this host reports SERVING, else why not."""
    env = EnvReader(environ, f"SUBSECOND_{service.upper()}_")
    port = env.integer("PORT", 0, minimum=1, maximum=65535)
    tls = TlsSettings.read(env)
    identity = env.text("IDENTITY", env.service)
    try:
        env.done()
    except SettingsError as error:
        return str(error)
    target = f"127.0.0.1:{port}"
    credentials = channel_credentials(tls)
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", identity)])
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as error:
            return f"{target}: {error.code().name} {error.details()}"  # type: ignore[attr-defined]
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m subsecond.kit.health_probe", description=__doc__.split("\n")[0])
    parser.add_argument("service", choices=["router", "cache", "embedding", "generation"])
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds the check may take")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    problem = check(args.service, os.environ, args.timeout)
    if problem is not None:
        log.warning("%s is not serving: %s", args.service, problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
