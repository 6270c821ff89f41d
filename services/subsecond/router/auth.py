"""Who is calling: the ``x-api-key`` of a call checked against hashed keys, before anything else.

Keys are configured as ``sha256:<hex>=tenant:scope+scope`` (``SUBSECOND_ROUTER_API_KEYS``, comma
separated; ``subsecond keys hash`` prints the form), so the Secret that holds them does not hold a
usable key. A presented key is hashed and compared with every configured digest in constant time
(``hmac.compare_digest``, and no early exit), so neither the comparison nor the number of digests
tried tells a caller how close its guess was. A key names one tenant and the scopes it may use:

- ``generate``: Generate and ListStaticRoutes;
- ``workflow``: RunWorkflow;
- ``admin``: the admin RPCs (invalidation and cache statistics), and nothing else by itself.

A call without a key is refused unless anonymous access is switched on explicitly
(``SUBSECOND_ROUTER_ALLOW_ANONYMOUS``); then it is the default tenant with ``generate`` and
``workflow``, never ``admin``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from subsecond.kit.errors import PermissionDenied, Unauthenticated
from subsecond.kit.settings import NAME_PATTERN

API_KEY_HEADER = "x-api-key"
GENERATE = "generate"
WORKFLOW = "workflow"
ADMIN = "admin"
SCOPES = frozenset({GENERATE, WORKFLOW, ADMIN})
ANONYMOUS_SCOPES = frozenset({GENERATE, WORKFLOW})
_SCHEME = "sha256:"


@dataclass(frozen=True)
class Caller:
    tenant: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class _Key:
    digest: bytes
    caller: Caller


def hash_key(key: str) -> str:
    """The configured form of a key's digest (``sha256:<hex>``)."""
    return _SCHEME + hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The configured keys, and the caller of a call without one (None: keys are required)."""

    def __init__(self, keys: tuple[_Key, ...], anonymous: Caller | None) -> None:
        self._keys = keys
        self.anonymous = anonymous

    @classmethod
    def parse(cls, raw: str, anonymous: Caller | None) -> KeyRing:
        """Reads ``sha256:<hex>=tenant:scope+scope,...``; ValueError says which entry is wrong
        (naming its tenant, never its digest)."""
        keys: list[_Key] = []
        for position, item in enumerate(part.strip() for part in raw.split(",") if part.strip()):
            digest, sep, grant = item.partition("=")
            tenant, colon, scopes = grant.partition(":")
            where = f"entry {position + 1}"
            if not (sep and colon and digest.startswith(_SCHEME)):
                raise ValueError(f"{where}: not sha256:<hex>=tenant:scope+scope (subsecond keys hash prints it)")
            try:
                raw_digest = bytes.fromhex(digest.removeprefix(_SCHEME))
            except ValueError:
                raw_digest = b""
            if len(raw_digest) != hashlib.sha256().digest_size:
                raise ValueError(f"{where}: the digest is not 64 hex digits")
            if not NAME_PATTERN.match(tenant):
                raise ValueError(f"{where}: tenant {tenant!r} is not a simple name")
            granted = frozenset(scopes.split("+"))
            if not granted or not granted <= SCOPES:
                raise ValueError(f"{where}: scopes {scopes!r} must be {'+'.join(sorted(SCOPES))} or a part of them")
            keys.append(_Key(raw_digest, Caller(tenant, granted)))
        return cls(tuple(keys), anonymous)

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(key.caller.tenant for key in self._keys)

    def authenticate(self, metadata: Mapping[str, str], scope: str) -> Caller:
        """The caller of a call with this metadata, allowed ``scope``: Unauthenticated without a
        (known) key, PermissionDenied when its key lacks the scope."""
        presented = metadata.get(API_KEY_HEADER)
        if presented is None:
            if self.anonymous is None:
                raise Unauthenticated(f"missing {API_KEY_HEADER} metadata")
            caller = self.anonymous
        else:
            caller = self._find(presented)
        if scope not in caller.scopes:
            raise PermissionDenied(f"this key has no {scope!r} scope (it has {', '.join(sorted(caller.scopes))})")
        return caller

    def _find(self, presented: str) -> Caller:
        digest = hashlib.sha256(presented.encode()).digest()
        found: Caller | None = None
        for key in self._keys:  # every digest is compared, whichever matches
            if hmac.compare_digest(digest, key.digest):
                found = key.caller
        if found is None:
            raise Unauthenticated(f"unknown {API_KEY_HEADER}")
        return found
