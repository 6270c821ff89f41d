"""The rewritten int8 model (per-text dynamic quantisation) against the model as exported, on the real
model: the rewrite changes nothing for one text, and makes a batch, padded or not, give each text its
vector alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from subsecond.embedding.onnx_model import MODEL_FILE, OUTPUT_NAME, TOKENIZER_FILE
from subsecond.embedding.per_text_quantisation import per_text_quantisation

WORDS = ("the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "past", "our", "old", "red", "barn", "near")


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sessions(model_dir: Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    exported = onnx.load(model_dir / MODEL_FILE)
    return session(exported), session(per_text_quantisation(exported))


@pytest.fixture(scope="module")
def same_length_ids(model_dir: Path) -> npt.NDArray[np.int64]:
    """16 different texts of 12 tokens each (every word here is one token)."""
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, size=10)) for _ in range(16)]
    ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    assert {len(row) for row in ids} == {12}
    return np.array(ids, dtype=np.int64)


def token_embeddings(model: ort.InferenceSession, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    (tokens,) = model.run([OUTPUT_NAME], feed)
    return np.asarray(tokens, dtype=np.float32)


def test_one_text_is_unchanged_by_the_rewrite(
    sessions: tuple[ort.InferenceSession, ort.InferenceSession], same_length_ids: npt.NDArray[np.int64]
) -> None:
    exported, rewritten = sessions
    for row in same_length_ids[:4]:
        np.testing.assert_allclose(
            token_embeddings(rewritten, row[None]), token_embeddings(exported, row[None]), rtol=0, atol=1e-6
        )


def test_a_batch_gives_each_text_its_vector_alone(
    sessions: tuple[ort.InferenceSession, ort.InferenceSession], same_length_ids: npt.NDArray[np.int64]
) -> None:
    exported, rewritten = sessions
    alone = np.concatenate([token_embeddings(exported, row[None]) for row in same_length_ids])
    np.testing.assert_allclose(token_embeddings(rewritten, same_length_ids), alone, rtol=0, atol=1e-6)
    # What the rewrite is for: the exported model's per-tensor scale mixes the texts of a batch.
    assert np.abs(token_embeddings(exported, same_length_ids) - alone).max() > 1e-3


def test_a_padded_text_gets_its_vector_alone(
    sessions: tuple[ort.InferenceSession, ort.InferenceSession], model_dir: Path
) -> None:
    """Texts of different lengths padded to the longest, the attention mask 0 over the padding: each
    text's token embeddings (its own positions) are those it gets alone, bit for bit, because the
    padding is left out of its quantisation range."""
    exported, rewritten = sessions
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    rng = np.random.default_rng(11)
    texts = [" ".join(rng.choice(WORDS, size=size)) for size in (1, 4, 9, 17, 30)]
    rows = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    longest = max(len(row) for row in rows)
    ids = np.zeros((len(rows), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    (padded,) = rewritten.run([OUTPUT_NAME], feed)
    for i, row in enumerate(rows):
        alone = token_embeddings(exported, np.array([row], dtype=np.int64))[0]
        np.testing.assert_array_equal(padded[i, : len(row)], alone)
