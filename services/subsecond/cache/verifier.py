"""The semantic tier's structural check: a small cross-encoder that reads both prompts at once.

A sentence embedding compares two prompts as two bags of meaning; the guard's rules compare their
words. Neither sees who does what to whom: "migrate from MySQL to PostgreSQL" and "migrate from
PostgreSQL to MySQL" share every word and embed at a cosine above 0.95. A cross-encoder reads the
pair as one sequence, ``[CLS] cached prompt [SEP] new prompt [SEP]``, so its attention relates each
word of one prompt to its place in the other, and it answers one question: the probability that
the cached answer is right for the new prompt.

The model is all-MiniLM-L6-v2's own first layers with a classification head, fine-tuned on
labelled pairs and generated hard negatives and exported to int8 ONNX by
:mod:`subsecond_tools.verifier_train`, which writes ``model.int8.onnx``, ``tokenizer.json`` and
``model.json`` (layers, maximum length, the int8/float agreement, the recipe's hash); the probability
a pair needs is the operating point's (``guard.OPERATING_POINTS``), chosen on the dev pairs by
``benchmarks/semantic_tier.py``.
Both prompts are first rewritten by :func:`subsecond.cache.normalise.normalise_pair`, in training and
here alike: normalised, so that a fraction, an abbreviation or a British spelling reaches the model
in one form, and a word one of them misspells or runs together written as the other spells it.

It runs on ONNX Runtime with one intra-op thread by default (``VERIFIER_THREADS``; the guard's thread
pool gives the parallelism between lookups), one pair per call, so that int8 activations are quantised
over this pair alone.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidProtobuf, RuntimeException
from tokenizers import Tokenizer

from subsecond.cache.guard import VerifierFailure
from subsecond.cache.normalise import normalise_pair

log = logging.getLogger(__name__)

MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "model.json"
OUTPUT_NAME = "logit"


class PairVerifier:
    """Scores (cached prompt, new prompt) pairs; safe to call from several threads at once."""

    def __init__(self, model_dir: Path, intra_op_threads: int = 1) -> None:
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG_FILE).read_text())
        self.layers: int = config["layers"]
        self.max_length: int = config["max_length"]
        self._tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # More than one intra-op thread: ONNX Runtime's idle threads spin waiting for work by default,
        # and in the cache that spinning takes the CPU the embedding service and the other lookups need.
        # Measured on two shared cores (semantic_hit_cache.py, two threads against one, interleaved):
        # spinning, the semantic hit's p50 went 23 -> 29 ms at 25 lookups/s and 23 -> 116 ms at 40/s,
        # though a call alone on an idle machine is faster spinning (3.7 against 4.3 ms not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def probability(self, cached: str, query: str) -> float:
        """How likely the answer cached for ``cached`` is right for ``query`` (0..1)."""
        encoding = self._tokenizer.encode(*normalise_pair(cached, query))
        ids = np.array([encoding.ids], dtype=np.int64)
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        try:
            (logit,) = self._session.run([OUTPUT_NAME], feed)
        except (Fail, InvalidArgument, RuntimeException) as error:
            raise VerifierFailure(str(error)) from error
        return 1.0 / (1.0 + math.exp(-float(logit.reshape(-1)[0])))


def open_verifier(model_dir: Path, intra_op_threads: int = 1) -> PairVerifier | None:
    """The verifier built in ``model_dir``, or None (logged) when it is not there or does not load:
    the cache then serves no semantic hits rather than unverified ones."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file():  # the build step writes it last
        log.error("no pair verifier in %s (build it: make prepare); the semantic tier serves nothing", model_dir)
        return None
    try:
        return PairVerifier(model_dir, intra_op_threads)
    except (OSError, KeyError, ValueError, Fail, InvalidArgument, InvalidProtobuf, RuntimeException):
        log.exception("the pair verifier in %s does not load; the semantic tier serves nothing", model_dir)
        return None
