"""Authentication first: hashed keys with scopes (auth.py), checked by every RPC before it reads
the request, and no access without a key unless anonymous access is switched on. The servicer
tests run the router in-process against the fake downstreams of test_router_service.py, whose
call records show that a refused call reached nothing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from test_router_service import Stack, answer, running_stack

from subsecond.kit.errors import PermissionDenied, Unauthenticated
from subsecond.kit.settings import SettingsError
from subsecond.router.auth import ANONYMOUS_SCOPES, Caller, KeyRing, hash_key
from subsecond.router.settings import RouterSettings
from subsecond.v1 import router_pb2
from subsecond_tools import cli

KEYS = ",".join(
    (
        f"{hash_key('gen-key')}=blue:generate",
        f"{hash_key('flow-key')}=blue:workflow",
        f"{hash_key('ops-key')}=ops:admin",
        f"{hash_key('all-key')}=green:generate+workflow+admin",
    )
)
CYCLE = router_pb2.WorkflowRequest(
    steps=[
        router_pb2.WorkflowStep(id="a", request=router_pb2.GenerateRequest(prompt="{{steps.b}}")),
        router_pb2.WorkflowStep(id="b", request=router_pb2.GenerateRequest(prompt="{{steps.a}}")),
    ]
)


def test_a_key_is_found_by_its_hash_with_its_tenant_and_scopes() -> None:
    ring = KeyRing.parse(KEYS, anonymous=None)
    everything = Caller("green", frozenset(ANONYMOUS_SCOPES | {"admin"}))
    assert ring.authenticate({"x-api-key": "all-key"}, "admin") == everything
    assert ring.authenticate({"x-api-key": "gen-key"}, "generate").tenant == "blue"
    assert ring.tenants == {"blue", "ops", "green"}
    with pytest.raises(PermissionDenied, match="no 'workflow' scope"):
        ring.authenticate({"x-api-key": "gen-key"}, "workflow")
    with pytest.raises(PermissionDenied, match="no 'generate' scope"):
        ring.authenticate({"x-api-key": "ops-key"}, "generate")
    with pytest.raises(Unauthenticated, match="unknown x-api-key"):
        ring.authenticate({"x-api-key": hash_key("gen-key")}, "generate")  # the stored digest is not a key
    with pytest.raises(Unauthenticated, match="missing x-api-key"):
        ring.authenticate({}, "generate")


def test_anonymous_access_is_the_default_tenant_without_admin() -> None:
    ring = KeyRing.parse(KEYS, anonymous=Caller("local", ANONYMOUS_SCOPES))
    assert ring.authenticate({}, "workflow").tenant == "local"
    with pytest.raises(PermissionDenied):
        ring.authenticate({}, "admin")
    with pytest.raises(Unauthenticated):  # a wrong key is not anonymous
        ring.authenticate({"x-api-key": "nope"}, "generate")


@pytest.mark.parametrize(
    ("raw", "wrong"),
    [
        ("gen-key=blue", "not sha256:<hex>=tenant:scope+scope"),  # the old clear-text form
        (f"{hash_key('k')}=blue", "not sha256:<hex>=tenant:scope+scope"),
        ("sha256:abcd=blue:generate", "not 64 hex digits"),
        (f"{hash_key('k')}=blue:generate+root", "scopes 'generate+root'"),
        (f"{hash_key('k')}=*:generate", "tenant '*'"),
    ],
)
def test_a_wrong_key_entry_is_refused_without_showing_its_digest(raw: str, wrong: str) -> None:
    with pytest.raises(SettingsError) as refused:
        RouterSettings.from_env({"SUBSECOND_ROUTER_API_KEYS": raw})
    assert wrong in str(refused.value)
    assert hash_key("k").removeprefix("sha256:") not in str(refused.value)


def test_keys_are_required_unless_anonymous_access_is_switched_on() -> None:
    assert RouterSettings.from_env({}).keys.anonymous is None
    allowed = RouterSettings.from_env({"SUBSECOND_ROUTER_ALLOW_ANONYMOUS": "true"})
    assert allowed.keys.anonymous == Caller("local", ANONYMOUS_SCOPES)


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Stack]:
    """A router with keys and no anonymous access."""
    async with running_stack(tmp_path, {"API_KEYS": KEYS, "ALLOW_ANONYMOUS": "false"}) as stack:
        yield stack


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _key(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),) if key else ()


@pytest.mark.parametrize(
    ("key", "code"),
    [("", grpc.StatusCode.UNAUTHENTICATED), ("nope", grpc.StatusCode.UNAUTHENTICATED)],
)
async def test_every_rpc_refuses_a_caller_without_a_known_key(keyed: Stack, key: str, code: grpc.StatusCode) -> None:
    router, metadata = keyed.router, _key(key)
    calls = [
        router.Generate(router_pb2.GenerateRequest(prompt="x"), metadata=metadata),
        # A cyclic plan: the key is checked first, so the answer is the key's, not INVALID_ARGUMENT.
        router.RunWorkflow(CYCLE, metadata=metadata),
        router.ListStaticRoutes(router_pb2.ListStaticRoutesRequest(), metadata=metadata),
        router.InvalidateCache(router_pb2.InvalidateCacheRequest(tenant="blue"), metadata=metadata),
        router.CacheStats(router_pb2.CacheStatsRequest(), metadata=metadata),
    ]
    for call in calls:
        assert (await _code(call))[0] == code
    assert keyed.cache.lookups == [] and keyed.generator.calls == []


async def test_each_rpc_needs_its_scope(keyed: Stack) -> None:
    router = keyed.router
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert (await _code(router.RunWorkflow(CYCLE, metadata=_key("gen-key"))))[0] == denied
    for key in ("flow-key", "ops-key"):
        generate = router.Generate(router_pb2.GenerateRequest(prompt="x"), metadata=_key(key))
        assert (await _code(generate))[0] == denied
    for key in ("gen-key", "flow-key"):
        stats = router.CacheStats(router_pb2.CacheStatsRequest(), metadata=_key(key))
        assert (await _code(stats))[0] == denied
    # With its scope, the workflow key reaches the plan (and its error).
    assert (await _code(router.RunWorkflow(CYCLE, metadata=_key("flow-key"))))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert keyed.cache.lookups == [] and keyed.generator.calls == []
    await answer(keyed, router_pb2.GenerateRequest(prompt="x"), key="gen-key")
    assert keyed.cache.lookups[0].query.tenant == "blue"
    stats = await router.CacheStats(router_pb2.CacheStatsRequest(), metadata=_key("ops-key"))
    assert stats.near_cache_entries == 1 and not stats.cache_breaker_open


def test_the_cli_prints_an_entry_the_router_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert cli.main(["keys", "hash", "--tenant", "blue", "--scope", "admin", "--scope", "generate"]) == 0
    entry = capsys.readouterr().out.strip()
    assert "s3cret" not in entry
    ring = RouterSettings.from_env({"SUBSECOND_ROUTER_API_KEYS": entry}).keys
    assert ring.authenticate({"x-api-key": "s3cret"}, "admin") == Caller("blue", frozenset({"admin", "generate"}))
