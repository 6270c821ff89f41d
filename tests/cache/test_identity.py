"""Versioned cache identity: the revision a router sends (the model behind the tier and the cache
epoch) is part of the exact key and of the semantic scope, so a rollout or a new epoch never serves
the answers of before, while invalidating a tier still removes every revision of it. Against the
real cache service, redis-server and Qdrant Edge of test_cache_service.py."""

from __future__ import annotations

import grpc
from fake_embedder import FakeEmbedder, towards
from test_cache_service import PARAPHRASE, QUESTION, cache, lookup, refused, store

from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc

__all__ = ["cache"]  # the fixture, imported for the tests below


def _revised(message: cache_pb2.LookupRequest | cache_pb2.StoreRequest, revision: str) -> None:
    message.query.revision = revision


async def test_another_revision_is_neither_an_exact_nor_a_semantic_hit(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    stored = store(QUESTION, "Canberra.")
    _revised(stored, "smollm2.1.e0")
    await cache.Store(stored)
    for prompt, revision, hit in (
        (QUESTION, "smollm2.1.e0", True),
        (PARAPHRASE, "smollm2.1.e0", True),  # semantic, same revision
        (QUESTION, "smollm2.2.e0", False),  # the rollout
        (PARAPHRASE, "smollm2.2.e0", False),
        (QUESTION, "smollm2.1.e1", False),  # the epoch
        (QUESTION, "", False),  # unversioned
    ):
        asked = lookup(prompt)
        _revised(asked, revision)
        assert (await cache.Lookup(asked)).hit is hit, (prompt, revision)


async def test_invalidating_a_tier_removes_every_revision(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0)})
    for revision in ("a.e0", "b.e0", ""):
        stored = store(QUESTION, "Canberra.")
        _revised(stored, revision)
        await cache.Store(stored)
    tier = cache_pb2.CacheQuery(tenant="acme", model="small")
    removed = await cache.Invalidate(cache_pb2.InvalidateRequest(query=tier))
    assert removed.removed == 3


async def test_a_revision_is_bounded(cache: cache_pb2_grpc.CacheStub) -> None:
    asked = lookup(QUESTION)
    _revised(asked, "r" * 129)
    error = await refused(cache.Lookup(asked))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("query.revision:")


def test_the_router_sends_each_tiers_revision_with_the_epoch() -> None:
    unversioned = RouterSettings.from_env({"SUBSECOND_ROUTER_TIERS": "small,large"})
    assert unversioned.cache_revisions == {"small": "", "large": "", "auto": ""}
    settings = RouterSettings.from_env(
        {
            "SUBSECOND_ROUTER_TIERS": "small,large",
            "SUBSECOND_ROUTER_AUTO_LARGE_TIER": "large",
            "SUBSECOND_ROUTER_TIER_REVISIONS": "small=smollm2-135m.1,large=smollm2-360m.3",
            "SUBSECOND_ROUTER_CACHE_EPOCH": "2",
        }
    )
    assert settings.cache_revisions == {
        "small": "smollm2-135m.1.e2",
        "large": "smollm2-360m.3.e2",
        "auto": "smollm2-135m.1+smollm2-360m.3.e2",
    }
