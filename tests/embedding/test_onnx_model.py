"""OnnxEmbedder against the real int8 model, built once into the repository's model cache."""

import json
from pathlib import Path

import numpy as np
import pytest

from subsecond.embedding.onnx_model import (
    CALL_POSITIONS,
    CONFIG_FILE,
    MODEL_FILE,
    PADDING_WASTE,
    TOKENIZER_FILE,
    OnnxEmbedder,
    padded_groups,
)
from subsecond_tools.embedding_export import BUILD, _built, export_model

DIMENSIONS = 384

TEXTS = [
    "How do I reset my password?",
    "What is the capital of France?",
    "Is it safe to take ibuprofen with coffee?",
    "",
    "A somewhat longer question about configuring two-factor authentication on a shared family account?",
]


@pytest.fixture(scope="session")
def embedder(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model_dir)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_describes_the_model(embedder: OnnxEmbedder) -> None:
    assert embedder.name == "all-MiniLM-L6-v2"
    assert embedder.dimensions == DIMENSIONS


def test_one_float32_row_per_text(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), DIMENSIONS)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()


def test_rows_have_unit_norm(embedder: OnnxEmbedder) -> None:
    norms = np.linalg.norm(embedder.embed(TEXTS), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_different_texts_get_different_embeddings(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed(TEXTS)
    similarities = vectors @ vectors.T
    assert (similarities[~np.eye(len(TEXTS), dtype=bool)] < 0.95).all()


def test_a_paraphrase_is_closer_than_an_unrelated_text(embedder: OnnxEmbedder) -> None:
    question, paraphrase, unrelated = embedder.embed(
        [
            "How do I reset my password?",
            "What are the steps to change my password?",
            "What is the boiling point of water at sea level?",
        ]
    )
    assert cosine(question, paraphrase) > 0.6
    assert cosine(question, unrelated) < 0.3
    assert cosine(question, paraphrase) > cosine(question, unrelated) + 0.4


def test_a_batch_embeds_each_text_as_if_it_were_alone(embedder: OnnxEmbedder) -> None:
    batch = embedder.embed(TEXTS)
    alone = np.concatenate([embedder.embed([text]) for text in TEXTS])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_a_very_long_text_is_truncated_not_rejected(embedder: OnnxEmbedder) -> None:
    # Each "word" is one token: both texts are cut at max_seq_length (256) tokens, to the same tokens.
    very_long, long = embedder.embed(["word " * 5000, "word " * 400])
    assert np.isfinite(very_long).all()
    np.testing.assert_allclose(very_long, long, atol=1e-5)
    shorter = embedder.embed(["word " * 100])[0]
    assert not np.allclose(very_long, shorter, atol=1e-3)  # tokens within the limit do count


def test_an_empty_list_gives_no_rows(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, DIMENSIONS)
    assert vectors.dtype == np.float32


def test_export_is_skipped_when_the_model_is_built(model_dir: Path) -> None:
    built = (model_dir / MODEL_FILE).stat().st_mtime_ns
    assert export_model(model_dir) == model_dir
    assert (model_dir / MODEL_FILE).stat().st_mtime_ns == built


def test_a_model_of_another_build_is_built_again(model_dir: Path, tmp_path: Path) -> None:
    # What lets `make prepare` replace the model in an existing .cache when the exporter changes.
    for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    assert _built(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["build"] == BUILD
    del config["build"]  # as the exporter's first build wrote it
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    assert not _built(tmp_path)


def test_agrees_with_the_original_model(embedder: OnnxEmbedder) -> None:
    pytest.importorskip("sentence_transformers", reason="needs the model-build extra")
    from subsecond_tools.embedding_export import load_original_model

    expected = load_original_model().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    similarities = np.sum(embedder.embed(TEXTS) * expected, axis=1)
    assert similarities.min() > 0.97


def test_texts_sharing_a_call_keep_their_vectors(embedder: OnnxEmbedder) -> None:
    # Four texts of 7 tokens (one model call) among texts of other lengths (padded calls).
    same_length = ["red cat sat on mat", "old dog ran far away", "the sea is very blue", "we like warm tea too"]
    texts = [*same_length, *TEXTS]
    batch = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([text]) for text in texts])
    np.testing.assert_array_equal(batch, alone)  # bit for bit


def test_two_workers_split_a_batch_and_keep_every_vector(model_dir: Path, embedder: OnnxEmbedder) -> None:
    # 20 texts of 7 tokens (one call) among texts of other lengths, some alone, the calls run on two
    # threads: each text's vector is the one it gets alone, bit for bit.
    words = ["red", "cat", "sat", "on", "mat", "old", "dog", "ran", "far", "sea", "blue", "warm", "tea"]
    rng = np.random.default_rng(3)
    same_length = [" ".join(rng.choice(words, size=5)) for _ in range(20)]
    texts = [*same_length, *TEXTS]
    two = OnnxEmbedder(model_dir, workers=2)
    try:
        batch = two.embed(texts)
    finally:
        two.close()
    alone = np.concatenate([embedder.embed([text]) for text in texts])
    np.testing.assert_array_equal(batch, alone)


@pytest.mark.parametrize(
    "lengths",
    [[], [7], [7] * 20, [5, 40, 6, 41, 5, 256, 7], [12, 13, 14, 15, 16, 30, 31, 2, 3], list(range(2, 60))],
)
def test_padded_groups_hold_every_text_once_within_the_padding_budget(lengths: list[int]) -> None:
    groups = padded_groups(lengths)
    assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
    for group in groups:
        own = sum(lengths[row] for row in group)
        positions = len(group) * max(lengths[row] for row in group)
        assert positions <= (1 + PADDING_WASTE) * own
        assert positions <= CALL_POSITIONS or len(group) == 1


def test_padded_groups_put_near_lengths_in_one_call_far_ones_apart_and_cut_big_calls() -> None:
    assert padded_groups([9] * 28) == [list(range(28))]  # 252 positions
    assert padded_groups([40, 5, 41, 6]) == [[1, 3], [0, 2]]
    assert padded_groups([16] * 32) == [list(range(16)), list(range(16, 32))]  # 256 positions each
