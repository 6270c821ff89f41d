"""A throwaway certificate authority for the local stack and the tests (PyPI's ``trustme``).

Each service gets a certificate whose subject alternative names are its own name (what an inner
service's ``ALLOWED_CALLERS`` names) and the loopback names its peers dial, usable both to serve
and as a client certificate; a shared secret for service tokens sits beside them. Nothing here
is meant to outlive the run directory it is written to: the stack makes a new CA at each start, in
``<run_dir>/tls`` (``ca.pem`` is what clients of the local stack trust: the CLI finds it there).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

LOOPBACK_NAMES = ("localhost", "127.0.0.1")
# Who may call whom in the stack: the router calls the cache and generation; the cache embeds, and so does the
# router for the HTTP API's /v1/embeddings.
CALLERS: Mapping[str, str] = {"cache": "router", "generation": "router", "embedding": "cache,router"}


@dataclass(frozen=True)
class ServiceCertificate:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class StackCertificates:
    ca_file: Path
    services: Mapping[str, ServiceCertificate]
    token_file: Path

    def environment(self, service: str, *, mutual: bool = True) -> dict[str, str]:
        """``SUBSECOND_<SERVICE>_*`` settings for TLS (mutual by default) and caller checks."""
        prefix = f"SUBSECOND_{service.upper()}_"
        own = self.services[service]
        env = {
            prefix + "TLS_CERT_FILE": str(own.cert_file),
            prefix + "TLS_KEY_FILE": str(own.key_file),
            prefix + "TLS_CA_FILE": str(self.ca_file),
            **token_environment(service, self.token_file),
        }
        if mutual:
            env[prefix + "TLS_CLIENT_CA_FILE"] = str(self.ca_file)
        return env


def token_environment(service: str, token_file: Path) -> dict[str, str]:
    """``SUBSECOND_<SERVICE>_*`` settings for caller checks by service token alone (no TLS)."""
    prefix = f"SUBSECOND_{service.upper()}_"
    env = {prefix + "SERVICE_TOKEN_FILE": str(token_file)}
    if service in CALLERS:
        env[prefix + "ALLOWED_CALLERS"] = CALLERS[service]
    return env


def write_token(directory: Path) -> Path:
    """A new shared secret for service tokens, readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "service-token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    return token_file


def write_certificates(directory: Path, names: Sequence[str]) -> StackCertificates:
    """A new CA, one certificate per name, and a token secret, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="subsecond local stack")
    ca_file = directory / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    services = {name: issue(authority, directory, name) for name in names}
    return StackCertificates(ca_file, services, write_token(directory))


def issue(authority: trustme.CA, directory: Path, name: str) -> ServiceCertificate:
    """A certificate for ``name`` (and the loopback names), signed by ``authority``; written again
    in place, it is how a test rotates a service's certificate."""
    issued = authority.issue_cert(name, *LOOPBACK_NAMES)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert_file))
    issued.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    return ServiceCertificate(cert_file, key_file)
