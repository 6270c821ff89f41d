"""all-MiniLM-L6-v2 sentence embeddings from the int8 ONNX model, on ONNX Runtime (no torch).

The model directory is the one :mod:`subsecond_tools.embedding_export` builds: ``model.int8.onnx``
(ids in, token embeddings out), ``tokenizer.json`` and ``model.json``. An embedding is what
sentence-transformers computes for this model: the mean of the token embeddings over the
attention mask, L2-normalised.

Texts of the same number of tokens run through the model together, one call per length, each
unpadded. The exported int8 model quantises its activations with one scale per call, computed
over the whole input tensor, so in a batch a text's embedding would depend on its neighbours (by up
to 0.03 per component for 32 texts of one length); the session therefore runs the model as
:mod:`per_text_quantisation` rewrites it, with one scale per text, which gives every text of a batch
exactly the vector it gets alone (bit for bit, asserted in tests/embedding) and so the same vector
whatever batch it arrives in, which a cache keyed by text needs. Padding would still change a
vector (the padded positions enter the per-text scale), hence groups of equal length rather than
padded buckets. A group of 32 texts of 19 tokens ran about 1.9 times as many texts a second as the
same texts one by one, on one thread.

A lone text runs on the model as exported instead: for one text the rewrite computes the same
vector bit for bit (tests/embedding), but its extra nodes keep ONNX Runtime from fusing each
quantisation with its product, which cost a lone text about 20% more CPU time.

Because no text's vector depends on the others in its call, a call's texts may be split anyway:
with ``workers`` > 1 the groups, and a large group's halves, run at the same time on that many
threads (ONNX Runtime releases the GIL), so one batch uses every core while each call stays on one.
"""

from __future__ import annotations

import json
from collections import defaultdict
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
# A group of texts of one length is split between workers only from this many texts: below it a
# call's fixed cost (about a third of a lone text's time) outweighs the second core.
SPLIT_FROM = 8


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
        rows_by_length: defaultdict[int, list[int]] = defaultdict(list)
        encodings = self._tokenizer.encode_batch_fast(list(texts))
        for row, encoding in enumerate(encodings):
            rows_by_length[len(encoding.ids)].append(row)
        parts = [part for rows in rows_by_length.values() for part in self._split(rows)]
        calls = [np.array([encodings[row].ids for row in part], dtype=np.int64) for part in parts]
        if self._pool is None or len(calls) == 1:
            results = [self._mean_tokens(ids) for ids in calls]
        else:
            results = list(self._pool.map(self._mean_tokens, calls))
        for part, means in zip(parts, results, strict=True):
            vectors[part] = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return vectors

    def _split(self, rows: list[int]) -> list[list[int]]:
        """One length group's rows as the parts that run as one call each: one part, or one per
        worker when the group is large enough to pay for the second call."""
        if self._workers == 1 or len(rows) < SPLIT_FROM:
            return [rows]
        size = -(-len(rows) // self._workers)
        return [rows[start : start + size] for start in range(0, len(rows), size)]

    def _mean_tokens(self, ids: npt.NDArray[np.int64]) -> Vectors:
        """The mean token embedding of each row of ``ids`` (texts of one length), one model call."""
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if self._takes_token_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        session = self._alone if len(ids) == 1 else self._per_text
        (tokens,) = session.run([OUTPUT_NAME], feed)
        # No padding, so the mean over the attention mask is the mean over all tokens.
        return np.asarray(tokens, dtype=np.float32).mean(axis=1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
