"""Triton's metrics, served again on the generation service's own metrics endpoint (HTTPS with TLS on).

Triton shares the generation pod and listens on loopback only (images/triton/launch-triton): its
metrics port on the pod's IP would be a plaintext listener, and a second target per pod for
Prometheus. Instead, each scrape of the generation service reads Triton's page on loopback and adds
its series to the answer, under Triton's own names, so one TLS endpoint per pod carries both.

A page that cannot be read (Triton loading its engines, restarting, hung, or answering something
that is not a metrics page) leaves Triton's series out and sets ``subsecond_generation_triton_up``
to 0; it never fails the scrape, whose other series (the service's latencies) the SLOs read. The
read is bounded by a deadline for the whole page, not only per socket operation.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

log = logging.getLogger(__name__)

UP = "subsecond_generation_triton_up"
READ_SECONDS = "subsecond_generation_triton_metrics_read_seconds"
# A page with every model's and GPU's series is tens of KB; far more is not Triton's page.
MAX_PAGE_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


class TritonMetrics(Collector):
    """A collector that reads Triton's metrics page (``url``) at each collection, within ``timeout_seconds``."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url = url
        self._timeout = timeout_seconds
        # Only changes are logged: a GPU profile loads its engines for up to an hour, scraped every 30 s.
        self._was_up: bool | None = None

    def describe(self) -> list[Metric]:
        # Nothing: without it, registering would read Triton's page to learn the names.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        try:
            families = _as_written(self._read(started + self._timeout))
        except (OSError, ValueError) as error:
            # URLError, HTTPError, refused and timed-out connections are OSError; a page that does not
            # parse (or decode) is ValueError.
            if self._was_up is not False:
                log.warning("Triton's metrics at %s unreadable (up=0): %s", self._url, error)
            self._was_up = False
            families = []
        else:
            if self._was_up is not True:
                log.info("Triton's metrics at %s readable (up=1)", self._url)
            self._was_up = True
        yield from families
        yield GaugeMetricFamily(UP, "1 when this scrape read Triton's metrics page, else 0.", value=float(self._was_up))
        yield GaugeMetricFamily(
            READ_SECONDS, "How long this scrape took to read Triton's metrics page.", value=time.monotonic() - started
        )

    def _read(self, deadline: float) -> str:
        with urllib.request.urlopen(self._url, timeout=self._timeout) as response:
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(_CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_PAGE_BYTES:
                    raise ValueError(f"page over {MAX_PAGE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"page not read within {self._timeout} s")
                chunks.append(chunk)
        return b"".join(chunks).decode()


def _as_written(page: str) -> list[Metric]:
    """The page's families with Triton's sample names unchanged.

    prometheus_client's parser renames the samples of a counter declared without ``_total``
    (Triton's ``nv_inference_request_success``) to ``..._total``, and its exposition would declare
    the family as ``..._total``: Triton's documented names would change. Such a counter is served as
    an untyped family under the name Triton gave it (queries read it the same way)."""
    families = list(text_string_to_metric_families(page))
    declared = {line.split()[2] for line in page.splitlines() if line.startswith("# TYPE ") and len(line.split()) > 2}
    written = []
    for family in families:
        if family.type == "counter" and family.name in declared:
            untyped = Metric(family.name, family.documentation, "unknown")
            untyped.samples = [
                Sample(family.name, *sample[1:]) if sample.name == f"{family.name}_total" else sample
                for sample in family.samples
            ]
            written.append(untyped)
        else:
            written.append(family)
    return written
