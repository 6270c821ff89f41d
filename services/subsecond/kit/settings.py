"""Reading a service's settings from environment variables, validated once at start-up.

Each service declares a frozen dataclass of its settings and a ``from_env`` that reads it
through an :class:`EnvReader`. The reader collects every problem instead of stopping at the
first, so a misconfigured pod says everything that is wrong in one log line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class SettingsError(ValueError):
    """One or more settings are missing or invalid."""


class EnvReader:
    """Reads ``<PREFIX><NAME>`` variables and records what is wrong with them."""

    def __init__(self, environ: Mapping[str, str], prefix: str) -> None:
        self._environ = environ
        self._prefix = prefix
        self._problems: list[str] = []

    def _read(self, name: str, default: T, parse: Callable[[str], T], rule: str) -> T:
        key = self._prefix + name
        raw = self._environ.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as error:
            self._problems.append(f"{key}={raw!r}: {rule} ({error})" if str(error) else f"{key}={raw!r}: {rule}")
            return default

    def text(self, name: str, default: str) -> str:
        """A string; set but empty means empty (how a URL or a default tenant is turned off)."""
        raw = self._environ.get(self._prefix + name)
        return default if raw is None else raw.strip()

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if value < minimum or (maximum is not None and value > maximum):
                raise ValueError(f"must be between {minimum} and {maximum if maximum is not None else 'inf'}")
            return value

        return self._read(name, default, parse, "an integer")

    def number(self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not minimum <= value <= (maximum if maximum is not None else float("inf")):
                raise ValueError(f"must be between {minimum} and {maximum if maximum is not None else 'inf'}")
            return value

        return self._read(name, default, parse, "a number")

    def flag(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("use true or false")

        return self._read(name, default, parse, "a boolean")

    def mapping(self, name: str, default: Mapping[str, str]) -> dict[str, str]:
        """``a=b,c=d`` pairs; keys and values must be simple names."""

        def parse(raw: str) -> dict[str, str]:
            pairs: dict[str, str] = {}
            for item in raw.split(","):
                key, sep, value = item.strip().partition("=")
                if not sep or not key or not value:
                    raise ValueError(f"{item.strip()!r} is not key=value")
                pairs[key.strip()] = value.strip()
            return pairs

        return self._read(name, dict(default), parse, "comma-separated key=value pairs")

    def integer_mapping(self, name: str, default: Mapping[str, int], *, minimum: int = 1) -> dict[str, int]:
        """``a=1,b=2`` pairs of a simple name and an integer of at least ``minimum``."""

        def parse(raw: str) -> dict[str, int]:
            pairs: dict[str, int] = {}
            for item in raw.split(","):
                key, sep, value = item.strip().partition("=")
                if not sep or not NAME_PATTERN.match(key.strip()):
                    raise ValueError(f"{item.strip()!r} is not name=integer")
                pairs[key.strip()] = int(value)
                if pairs[key.strip()] < minimum:
                    raise ValueError(f"{key.strip()}: must be at least {minimum}")
            return pairs

        return self._read(name, dict(default), parse, "comma-separated name=integer pairs")

    def names(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list of simple names."""

        def parse(raw: str) -> tuple[str, ...]:
            items = tuple(item.strip() for item in raw.split(",") if item.strip())
            for item in items:
                if not NAME_PATTERN.match(item):
                    raise ValueError(f"{item!r} is not a simple name")
            return items

        return self._read(name, default, parse, "comma-separated names")

    @property
    def service(self) -> str:
        """The service these settings belong to, from the prefix: ``SUBSECOND_CACHE_`` is ``cache``."""
        return self._prefix.removeprefix("SUBSECOND_").strip("_").lower()

    def path(self, name: str) -> Path | None:
        """A file that must exist when set; unset or empty is None."""

        def parse(raw: str) -> Path:
            if not Path(raw).is_file():
                raise ValueError("no such file")
            return Path(raw)

        return self._read(name, None, parse, "a readable file")

    def check(self, condition: bool, message: str) -> None:
        """Records a cross-field problem."""
        if not condition:
            self._problems.append(message)

    def done(self) -> None:
        """Raises :class:`SettingsError` listing every problem found so far."""
        if self._problems:
            raise SettingsError("invalid settings: " + "; ".join(self._problems))


@dataclass(frozen=True)
class TlsSettings:
    """Certificates of one service (``TLS_*``), read from files so that a rotated Secret is picked up.

    ``cert_file``/``key_file`` are the service's own certificate: its server serves it, and its
    channels present it as their client certificate. With ``client_ca_file`` the server requires a
    client certificate signed by that CA (mutual TLS). With ``ca_file`` the service's channels speak
    TLS and verify the servers they call against that CA. With ``metrics_client_ca_file`` the metrics
    endpoint requires a client certificate signed by that CA too (Prometheus's, the chart's `scraper`)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    ca_file: Path | None = None
    metrics_client_ca_file: Path | None = None

    @property
    def serves_tls(self) -> bool:
        return self.cert_file is not None

    @classmethod
    def read(cls, env: EnvReader) -> TlsSettings:
        settings = cls(
            cert_file=env.path("TLS_CERT_FILE"),
            key_file=env.path("TLS_KEY_FILE"),
            client_ca_file=env.path("TLS_CLIENT_CA_FILE"),
            ca_file=env.path("TLS_CA_FILE"),
            metrics_client_ca_file=env.path("METRICS_CLIENT_CA_FILE"),
        )
        env.check(
            (settings.cert_file is None) == (settings.key_file is None),
            "TLS_CERT_FILE and TLS_KEY_FILE are set together or not at all",
        )
        env.check(
            settings.client_ca_file is None or settings.cert_file is not None,
            "TLS_CLIENT_CA_FILE (client certificates) needs TLS_CERT_FILE and TLS_KEY_FILE",
        )
        env.check(
            settings.metrics_client_ca_file is None or settings.cert_file is not None,
            "METRICS_CLIENT_CA_FILE (the scraper's certificate) needs TLS_CERT_FILE and TLS_KEY_FILE",
        )
        return settings


@dataclass(frozen=True)
class CallerSettings:
    """Who may call this service's own RPCs (health checks and reflection stay open to anyone).

    ``allowed`` names the callers accepted: a name in the client certificate's subject alternative
    names under mutual TLS, or the name in a service token signed with the shared secret in
    ``token_file`` (the local stack without TLS). Empty accepts every caller: the router's public
    port, whose callers are authenticated by their API key instead. ``identity`` is the name this
    service signs its own outgoing tokens with."""

    identity: str = ""
    allowed: tuple[str, ...] = ()
    token_file: Path | None = None

    @classmethod
    def read(cls, env: EnvReader, tls: TlsSettings) -> CallerSettings:
        settings = cls(
            identity=env.text("IDENTITY", env.service),
            allowed=env.names("ALLOWED_CALLERS", ()),
            token_file=env.path("SERVICE_TOKEN_FILE"),
        )
        env.check(
            not settings.allowed or tls.client_ca_file is not None or settings.token_file is not None,
            "ALLOWED_CALLERS needs a way to identify callers: TLS_CLIENT_CA_FILE (mutual TLS) or SERVICE_TOKEN_FILE",
        )
        return settings


@dataclass(frozen=True)
class ServerSettings:
    """What every service's server shell needs."""

    host: str
    port: int
    metrics_port: int
    shutdown_grace_seconds: float
    log_level: str
    tls: TlsSettings = field(default_factory=TlsSettings)
    callers: CallerSettings = field(default_factory=CallerSettings)
    # Worker processes sharing the port (SO_REUSEPORT), each with its own event loop (kit.workers).
    processes: int = 1

    @classmethod
    def read(cls, env: EnvReader, *, default_port: int, default_metrics_port: int) -> ServerSettings:
        level = env.text("LOG_LEVEL", "INFO").upper()
        env.check(
            level in {"DEBUG", "INFO", "WARNING", "ERROR"},
            f"LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR",
        )
        tls = TlsSettings.read(env)
        return cls(
            tls=tls,
            callers=CallerSettings.read(env, tls),
            host=env.text("HOST", "127.0.0.1"),
            port=env.integer("PORT", default_port, maximum=65535),
            metrics_port=env.integer("METRICS_PORT", default_metrics_port, maximum=65535),
            shutdown_grace_seconds=env.number("SHUTDOWN_GRACE_SECONDS", 20.0, maximum=3600.0),
            log_level=level,
            processes=env.integer("PROCESSES", 1, minimum=1, maximum=64),
        )
