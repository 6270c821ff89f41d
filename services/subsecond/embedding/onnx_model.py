"""all-MiniLM-L6-v2 sentence embeddings from the int8 ONNX model, on ONNX Runtime (no torch).

The model directory is the one :mod:`subsecond_tools.embedding_export` builds: ``model.int8.onnx``
(ids in, token embeddings out), ``tokenizer.json`` and ``model.json``. An embedding is what
sentence-transformers computes for this model: the mean of the token embeddings over the
attention mask, L2-normalised.

Texts run through the model together, padded to the longest of their call: sorted by length and
cut into calls where padding would add more than a quarter of their tokens or a call would exceed
256 positions (``padded_groups``). The
exported int8 model quantises its activations with one scale per call, computed over the whole
input tensor, so in a batch a text's embedding would depend on its neighbours (by up to 0.03 per
component for 32 texts of one length) and on its padding; the session therefore runs the model as
:mod:`per_text_quantisation` rewrites it, with one scale per text over its unpadded positions, which
gives every text of a batch exactly the vector it gets alone (bit for bit, asserted in
tests/embedding) and so the same vector whatever batch it arrives in, which a cache keyed by text
needs. A group of 32 texts of 19 tokens ran about 1.9 times as many texts a second as the same texts
one by one, on one thread.

A lone text runs on the model as exported instead: for one text the rewrite computes the same
vector bit for bit (tests/embedding), but its extra nodes keep ONNX Runtime from fusing each
quantisation with its product, which cost a lone text about 20% more CPU time.

Because no text's vector depends on the others in its call, a batch's calls may run anywhere: with
``workers`` > 1 they run at the same time on that many threads (ONNX Runtime releases the GIL), so
one batch uses every core while each call stays on one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

from subsecond.embedding.per_text_quantisation import per_text_quantisation

Vectors = npt.NDArray[np.float32]

MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "model.json"
OUTPUT_NAME = "token_embeddings"
# Padding a call may add, as a share of its texts' own tokens, before the next text opens a call.
PADDING_WASTE = 0.25
# Most positions (texts x padded length) in one call. The model's time is about linear in positions
# (under 2 ms of a lone text's is per call): bigger calls only cost more per text (their activations
# outgrow the CPU's caches), while smaller ones spread over the workers. Per text, 32 texts of 27-33
# tokens cost 9.8 ms of CPU at 256 positions a call, 10.2 at 512, 12.6 uncut, 9.9 one call per length.
CALL_POSITIONS = 256


class OnnxEmbedder:
    """Embeds texts with the exported model; safe to call from several threads at once."""

    def __init__(self, model_dir: Path, intra_op_threads: int = 1, workers: int = 1) -> None:
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG_FILE).read_text())
        if config["pooling"] != "mean" or not config["normalised"]:
            raise ValueError(f"{model_dir / CONFIG_FILE}: expected mean pooling and normalised embeddings")
        self._name: str = config["name"]
        self._dimensions: int = config["dimensions"]

        self._tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(config["max_seq_length"])
        self._tokenizer.no_padding()  # texts are grouped by length: nothing to pad

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # With more than one intra-op thread, ONNX Runtime's idle threads spin waiting for work by
        # default: on two shared cores that spinning took the CPU the model needed (a batch of 32
        # texts on one call of two threads: 117 texts per CPU-second spinning, 197 not; load 11).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        exported = onnx.load(model_dir / MODEL_FILE)
        self._alone, self._per_text = (
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            for model in (exported, per_text_quantisation(exported))
        )
        self._takes_token_types = "token_type_ids" in {i.name for i in self._alone.get_inputs()}
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="embed-model") if workers > 1 else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length float32 row per text, shape ``(len(texts), dimensions)``.

        A text longer than the model's ``max_seq_length`` tokens is truncated to it.
        """
        vectors = np.empty((len(texts), self._dimensions), dtype=np.float32)
        encodings = self._tokenizer.encode_batch_fast(list(texts))
        ids = [encoding.ids for encoding in encodings]
        parts = padded_groups([len(row) for row in ids])
        calls = [[ids[row] for row in part] for part in parts]
        if self._pool is None or len(calls) == 1:
            results = [self._mean_tokens(call) for call in calls]
        else:
            results = list(self._pool.map(self._mean_tokens, calls))
        for part, means in zip(parts, results, strict=True):
            vectors[part] = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return vectors

    def _mean_tokens(self, rows: list[list[int]]) -> Vectors:
        """The mean token embedding of each text (its token ids), one model call, padded to the longest."""
        longest = max(len(row) for row in rows)
        ids = np.zeros((len(rows), longest), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if self._takes_token_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        session = self._alone if len(rows) == 1 else self._per_text
        (tokens,) = session.run([OUTPUT_NAME], feed)
        # The mean over the attention mask. Padded positions add zeros after the text's own, so a
        # text's sum is the one it has alone, bit for bit.
        kept = mask[:, :, None].astype(np.float32)
        return (np.asarray(tokens, dtype=np.float32) * kept).sum(axis=1) / kept.sum(axis=1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def padded_groups(
    lengths: Sequence[int], waste: float = PADDING_WASTE, positions: int = CALL_POSITIONS
) -> list[list[int]]:
    """The rows of texts of these token lengths, grouped for one model call each: shortest first, a
    group closed when padding its texts to the next one's length would add more than ``waste`` of
    their own tokens, or would make more than ``positions`` positions (a longer text is alone)."""
    groups: list[list[int]] = []
    group: list[int] = []
    tokens = 0
    for row in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[row]
        padded = (len(group) + 1) * length
        if group and (padded > (1 + waste) * (tokens + length) or padded > positions):
            groups.append(group)
            group, tokens = [], 0
        group.append(row)
        tokens += length
    if group:
        groups.append(group)
    return groups
