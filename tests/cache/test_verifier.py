"""The pair verifier: the int8 ONNX model that `make prepare` builds (never trained here), its
decisions on pairs it was not trained on, failing safe, and running off the event loop.

The service tests run the cache in the kit's server shell against a real redis-server and the
stand-in embedder (no embedding model needed to place two prompts close)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from fake_embedder import FakeEmbedder, towards
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from redis_server import RedisServer

from subsecond.cache.guard import OPERATING_POINTS, Acceptance, accept_semantic
from subsecond.cache.service import definition
from subsecond.cache.settings import CacheSettings
from subsecond.cache.verifier import CONFIG_FILE, MODEL_FILE, PairVerifier, open_verifier
from subsecond.kit.server import start_server
from subsecond.kit.settings import SettingsError
from subsecond.v1 import cache_pb2, cache_pb2_grpc, types_pb2
from subsecond_tools.verifier_train import AGREEMENT_BOUND, SOUP_SEEDS

MODEL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "models" / "pair-verifier"

pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / MODEL_FILE).is_file(), reason="the verifier is built by `make prepare` (make test runs it first)"
)


@pytest.fixture(scope="module")
def verifier() -> PairVerifier:
    return PairVerifier(MODEL_DIR)


# Written for this test, in none of the training inputs (the generators' templates, the dev pairs,
# QQP): one change of meaning each, in the kinds that word rules miss or barely catch.
REFUSED = [
    ("Can the referee fine the coach?", "Can the coach fine the referee?"),  # roles
    ("How do I port my number from Verizon to T-Mobile?", "How do I port my number from T-Mobile to Verizon?"),
    (
        "Which snacks are good for toddlers, in your opinion?",
        "Which snacks are, in your opinion, not good for toddlers?",
    ),
    ("What port does IMAP use?", "What port does POP3 use?"),  # one short term for another
]
ACCEPTED = [
    ("How many calories are in two bananas?", "How many calories are in 2 bananas?"),  # numeral
    ("What does the EPA regulate?", "What does the Environmental Protection Agency regulate?"),  # abbreviation
    ("Is it necessary to repot an orchid every year?", "Is it neccessary to repot an orchid every year?"),  # typo
]


def test_the_verifier_ranks_every_change_of_meaning_below_every_rewording(verifier: PairVerifier) -> None:
    # Rounds four to nine failed this (an xfail): the negation far from its verb got 0.83-0.92, 0.78 in
    # round nine, above every rewording. Round ten's verifier, trained without QQP's unlabelled
    # other-line "negatives", gave it 0.37 and the rewordings 0.56 to 0.98; round eleven's, four layers
    # deep, gives it 0.05 and the rewordings 0.93 to 0.98 (three layers with round eleven's data: 0.38
    # to 0.94 for it, by seed and epochs, and twice above a rewording).
    refused = [verifier.probability(cached, query) for cached, query in REFUSED]
    accepted = [verifier.probability(cached, query) for cached, query in ACCEPTED]
    assert max(refused) < min(accepted)


def test_the_verifier_alone_refuses_most_changes_and_ranks_every_rewording_above_them(verifier: PairVerifier) -> None:
    refused = [verifier.probability(cached, query) for cached, query in REFUSED]
    accepted = [verifier.probability(cached, query) for cached, query in ACCEPTED]
    # At the strict point's probability, on its own, it refuses the role swap, the route reversal and
    # the term change (0.04, 0.03 and 0.03 in round nine); the far negation (0.78) passes it, and the
    # rules refuse all four (next test). Every rewording ranks above those three; on its own the
    # verifier gave them 0.38-0.73 in round nine, under `default` (0.75): the tier serves them because
    # the normaliser and the spelling aligner make each pair one text (the tests below).
    assert sum(p < OPERATING_POINTS["strict"].probability for p in refused) >= 3
    clear_changes = sorted(refused)[:3]
    assert min(accepted) > max(clear_changes)


def test_an_identical_pair_is_served_whatever_probability_the_verifier_gives_it(verifier: PairVerifier) -> None:
    # The three-layer verifiers of rounds nine and ten gave this 0.30 and 0.02, having learnt numbers as a
    # sign of a near miss; round eleven's four layers 0.77, round fourteen's 0.70 (below `default`'s
    # 0.75). The guard serves a pair that is one text once normalised without asking the verifier
    # (guard.same_text), at every point.
    text = "How many calories are in 2 bananas?"
    assert verifier.probability(text, text) >= OPERATING_POINTS["loose"].probability
    assert accept_semantic(text, text, 1.0, Acceptance(OPERATING_POINTS["strict"], verifier)).hit


@pytest.mark.parametrize(("cached", "query"), REFUSED)
def test_the_semantic_tier_refuses_a_change_of_meaning(verifier: PairVerifier, cached: str, query: str) -> None:
    decision = accept_semantic(query, cached, 0.95, Acceptance(OPERATING_POINTS["default"], verifier))
    assert not decision.hit


@pytest.mark.parametrize(("cached", "query"), ACCEPTED)
def test_the_semantic_tier_serves_the_same_question_written_another_way(
    verifier: PairVerifier, cached: str, query: str
) -> None:
    assert accept_semantic(query, cached, 0.95, Acceptance(OPERATING_POINTS["default"], verifier)).hit


def test_the_verifier_is_a_probability_and_deterministic(verifier: PairVerifier) -> None:
    first = verifier.probability("Is coffee bad for you?", "Is coffee bad for your health?")
    assert 0.0 <= first <= 1.0
    assert verifier.probability("Is coffee bad for you?", "Is coffee bad for your health?") == first


@pytest.mark.parametrize(
    ("cached", "typed"),
    [
        ("why does my dog lick his paws all the time", "why does my dog lick his paws all the tiem"),
        ("can i use my debit card abroad without fees", "can i use my debitcard abroad without fees"),
    ],
)
def test_the_verifier_reads_a_typo_as_the_word_the_other_prompt_spells(
    verifier: PairVerifier, cached: str, typed: str
) -> None:
    # The model sees the same two texts whether the query misspelt the word or not (normalise_pair).
    assert verifier.probability(cached, typed) == verifier.probability(cached, cached)


def test_two_intra_op_threads_give_the_probabilities_one_gives(verifier: PairVerifier) -> None:
    """VERIFIER_THREADS splits a call's operators between threads; it must not change a decision."""
    two = PairVerifier(MODEL_DIR, intra_op_threads=2)
    options = two._session.get_session_options()
    # two threads really, and idle ones that sleep (spinning took the embedding service's CPU)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for cached, query in REFUSED + ACCEPTED:
        assert two.probability(cached, query) == pytest.approx(verifier.probability(cached, query), abs=1e-5)


@pytest.mark.parametrize(("value", "threads"), [(None, 1), ("2", 2), ("16", 16)])
def test_verifier_threads_are_read_one_by_default(value: str | None, threads: int) -> None:
    environ = {} if value is None else {"SUBSECOND_CACHE_VERIFIER_THREADS": value}
    assert CacheSettings.from_env(environ).verifier_threads == threads


@pytest.mark.parametrize("value", ["0", "17", "two"])
def test_verifier_threads_out_of_bounds_are_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="VERIFIER_THREADS"):
        CacheSettings.from_env({"SUBSECOND_CACHE_VERIFIER_THREADS": value})


def test_int8_and_float_decided_alike_on_the_dev_pairs_when_built() -> None:
    """The build compares the int8 model with its float export on every dev pair and refuses to finish
    above AGREEMENT_BOUND; model.json records the share it measured."""
    config = json.loads((MODEL_DIR / CONFIG_FILE).read_text())
    assert 0.0 <= config["int8_float_disagreement"] <= AGREEMENT_BOUND
    assert config["layers"] >= 1 and config["max_length"] > 0
    assert config["seeds"] == list(SOUP_SEEDS)  # the mean of the models trained with these seeds


def test_a_missing_model_is_none_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="subsecond.cache.verifier"):
        assert open_verifier(tmp_path / "absent") is None
    assert "no pair verifier" in caplog.text


def test_a_broken_model_is_none_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in (CONFIG_FILE, "tokenizer.json"):
        (tmp_path / name).write_bytes((MODEL_DIR / name).read_bytes())
    (tmp_path / MODEL_FILE).write_bytes(b"not an onnx model")
    with caplog.at_level(logging.ERROR, logger="subsecond.cache.verifier"):
        assert open_verifier(tmp_path) is None
    assert "does not load" in caplog.text


# -- in the service ---------------------------------------------------------------------------------

STORED, ASKED, OTHER = "Which city is the capital of Canada?", "What is Canada's capital city?", "Hi there?"


def _settings(redis_url: str, embedder: FakeEmbedder, tmp_path: Path, verifier_dir: Path) -> CacheSettings:
    return CacheSettings.from_env(
        {
            "SUBSECOND_CACHE_PORT": "0",
            "SUBSECOND_CACHE_METRICS_PORT": "0",
            "SUBSECOND_CACHE_REDIS_URL": redis_url,
            "SUBSECOND_CACHE_EMBEDDING_URL": embedder.address,
            "SUBSECOND_CACHE_VECTOR_PATH": str(tmp_path / "vectors"),
            "SUBSECOND_CACHE_VERIFIER_DIR": str(verifier_dir),
        }
    )


def _query(prompt: str) -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant="acme",
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=prompt)],
        sampling=types_pb2.SamplingParams(temperature=0.0),
    )


ANSWER = cache_pb2.CachedAnswer(chunks=["Ottawa"], finish_reason=types_pb2.FINISH_REASON_STOP, model="small")


def _refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("subsecond_cache_semantic_rejections_total", {"reason": reason}) or 0.0


async def _stored_then_asked(settings: CacheSettings) -> tuple[cache_pb2.LookupResponse, cache_pb2.LookupResponse]:
    """On a cache service of ``settings``: an answer stored for STORED, then ASKED looked up
    semantically and STORED exactly."""
    running = await start_server(settings.server, definition(settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            cache = cache_pb2_grpc.CacheStub(channel)
            await cache.Store(cache_pb2.StoreRequest(query=_query(STORED), answer=ANSWER))
            found = await cache.Lookup(cache_pb2.LookupRequest(query=_query(ASKED), semantic=True))
            exact = await cache.Lookup(cache_pb2.LookupRequest(query=_query(STORED)))
    finally:
        await running.stop(0)
    return found, exact


@pytest.mark.parametrize("served", [True, False], ids=["built", "absent"])
async def test_the_service_serves_a_verified_paraphrase_and_nothing_without_a_verifier(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path, served: bool
) -> None:
    fake_embedder.vectors.update({STORED: towards(0), ASKED: towards(10)})  # cosine 0.98
    verifier_dir = MODEL_DIR if served else tmp_path / "absent-verifier"
    settings = _settings(redis_server.url, fake_embedder, tmp_path, verifier_dir)
    unavailable = _refusals("verifier:unavailable")
    found, exact = await _stored_then_asked(settings)
    assert found.hit == served
    assert exact.hit  # the exact tier needs no verifier
    assert _refusals("verifier:unavailable") == unavailable + (0 if served else 1)


async def test_the_service_builds_its_verifier_with_the_threads_set(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    real = PairVerifier.__init__

    def recorded(self: PairVerifier, model_dir: Path, intra_op_threads: int = 1) -> None:
        built.append(intra_op_threads)
        real(self, model_dir, intra_op_threads)

    monkeypatch.setattr(PairVerifier, "__init__", recorded)
    fake_embedder.vectors.update({STORED: towards(0), ASKED: towards(10)})
    settings = replace(_settings(redis_server.url, fake_embedder, tmp_path, MODEL_DIR), verifier_threads=2)
    found, _ = await _stored_then_asked(settings)
    assert built == [2]
    assert found.hit and found.tier == cache_pb2.CACHE_TIER_SEMANTIC


async def test_health_is_answered_while_the_verifier_works(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real verifier, made to wait first (the only way to observe "meanwhile" on any machine)."""
    release, judging = threading.Event(), threading.Event()
    real = PairVerifier.probability

    def held(self: PairVerifier, cached: str, query: str) -> float:
        judging.set()
        release.wait(10)
        return real(self, cached, query)

    monkeypatch.setattr(PairVerifier, "probability", held)
    fake_embedder.vectors.update({STORED: towards(0), ASKED: towards(10), OTHER: towards(90)})
    settings = _settings(redis_server.url, fake_embedder, tmp_path, MODEL_DIR)
    running = await start_server(settings.server, definition(settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            cache = cache_pb2_grpc.CacheStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await cache.Store(cache_pb2.StoreRequest(query=_query(STORED), answer=ANSWER))
            pending = asyncio.ensure_future(cache.Lookup(cache_pb2.LookupRequest(query=_query(ASKED), semantic=True)))
            assert await asyncio.to_thread(judging.wait, 10)
            checked = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            assert not pending.done()
            release.set()
            found = await pending
    finally:
        release.set()
        await running.stop(0)
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert found.hit
