"""Start-up: settings, logging, the /metrics endpoint, then kopf in standalone mode until SIGTERM."""

from __future__ import annotations

import logging
import os
import sys

import kopf
import prometheus_client

from subsecond.kit.logs import configure_logging
from subsecond.kit.settings import SettingsError
from subsecond_operator.handlers import build_registry
from subsecond_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def main() -> None:
    try:
        settings = OperatorSettings.from_env(os.environ)
    except SettingsError as error:
        configure_logging("operator", "INFO")
        log.error("%s", error)
        sys.exit(2)
    configure_logging("operator", settings.log_level)
    prometheus_client.start_http_server(settings.metrics_port)
    log.info(
        "operator starting",
        extra={"namespace": settings.namespace or "*", "prometheus": settings.prometheus_url},
    )
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not settings.namespace,
        namespaces=[settings.namespace] if settings.namespace else [],
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )
