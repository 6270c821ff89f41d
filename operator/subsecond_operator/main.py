"""Start-up: settings, logging, the /metrics endpoint (HTTPS with a certificate), then kopf in standalone
mode until SIGTERM, its liveness endpoint on loopback (endpoints)."""

from __future__ import annotations

import logging
import os
import sys

import kopf

from subsecond.kit.logs import configure_logging
from subsecond.kit.settings import SettingsError
from subsecond_operator.endpoints import liveness_endpoint, metrics_tls, serve_metrics
from subsecond_operator.handlers import build_registry
from subsecond_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def main() -> None:
    try:
        settings = OperatorSettings.from_env(os.environ)
        tls = metrics_tls(os.environ)
    except SettingsError as error:
        configure_logging("operator", "INFO")
        log.error("%s", error)
        sys.exit(2)
    configure_logging("operator", settings.log_level)
    serve_metrics(settings.metrics_port, tls)
    log.info(
        "operator starting",
        extra={"namespace": settings.namespace or "*", "prometheus": settings.prometheus_url},
    )
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not settings.namespace,
        namespaces=[settings.namespace] if settings.namespace else [],
        liveness_endpoint=liveness_endpoint(settings.health_port),
    )
