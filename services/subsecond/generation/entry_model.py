"""The contract with a tier's entry model in Triton: TensorRT-LLM's ``ensemble`` / ``tensorrt_llm_bls``
interface, checked against the model's own configuration at warm-up.

What the service sends: ``text_input`` (the conversation rendered with the model's chat template),
``max_tokens``, ``stream``, ``temperature``, ``top_p`` and, when the caller fixed one, ``random_seed``;
what it reads: ``text_output`` only (the ensemble has no token-count outputs, and Triton refuses a
request that asks for an output the model does not declare). A model with ``max_batch_size`` > 0
(TensorRT-LLM's) takes every tensor with a batch dimension, ``[1, 1]``; one with 0 takes ``[1]``.
A model whose config parameter ``accumulate_tokens`` is true streams the whole text so far in each
response; :class:`TextDeltas` turns either kind of stream into what is new.
"""

from __future__ import annotations

import codecs
import logging
import struct
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2, service_pb2
from tritonclient.utils import deserialize_bytes_tensor

from subsecond.kit.prompt_identity import Sampling

log = logging.getLogger(__name__)

TEXT_OUTPUT = "text_output"
# Every input the service sends, with the type it sends it as: (Triton config type, wire type, the
# little-endian struct format of one element; a string is its UTF-8 length-prefixed by a uint32).
_INPUTS: dict[str, tuple[str, str, str]] = {
    "text_input": ("TYPE_STRING", "BYTES", "<I"),
    "max_tokens": ("TYPE_INT32", "INT32", "<i"),
    "stream": ("TYPE_BOOL", "BOOL", "<?"),
    "temperature": ("TYPE_FP32", "FP32", "<f"),
    "top_p": ("TYPE_FP32", "FP32", "<f"),
    "random_seed": ("TYPE_UINT64", "UINT64", "<Q"),
}
# A character the detokenizer could not complete yet (its bytes are split across tokens).
REPLACEMENT = "\ufffd"


class ContractError(ValueError):
    """The model in Triton does not take what the service sends or give what it reads."""


def _type_name(data_type: int) -> str:
    return model_config_pb2.DataType.Name(data_type)


def _takes_one_element(dims: list[int]) -> bool:
    return dims in ([1], [-1])


@dataclass(frozen=True)
class EntryModel:
    name: str
    # max_batch_size > 0: tensors carry a batch dimension of 1.
    batched: bool
    # accumulate_tokens: each text_output is the whole text so far, not the new part.
    cumulative: bool

    @classmethod
    def from_config(cls, config: model_config_pb2.ModelConfig) -> EntryModel:
        """The contract of a model as Triton describes it; ContractError lists every mismatch."""
        problems = []
        declared_inputs = {tensor.name: tensor for tensor in config.input}
        for name, (config_type, _, _) in _INPUTS.items():
            tensor = declared_inputs.get(name)
            if tensor is None:
                problems.append(f"no input {name}")
            elif _type_name(tensor.data_type) != config_type or not _takes_one_element(list(tensor.dims)):
                problems.append(
                    f"input {name} is {_type_name(tensor.data_type)} {list(tensor.dims)}, not {config_type} [1]"
                )
        outputs = {tensor.name: tensor for tensor in config.output}
        if TEXT_OUTPUT not in outputs:
            problems.append(f"no output {TEXT_OUTPUT}")
        elif _type_name(outputs[TEXT_OUTPUT].data_type) != "TYPE_STRING":
            problems.append(f"output {TEXT_OUTPUT} is {_type_name(outputs[TEXT_OUTPUT].data_type)}, not TYPE_STRING")
        if not config.model_transaction_policy.decoupled:
            problems.append("not decoupled (it cannot stream)")
        if problems:
            raise ContractError(f"model {config.name}: {'; '.join(problems)}")
        accumulate = config.parameters.get("accumulate_tokens")
        cumulative = accumulate is not None and accumulate.string_value.strip().lower() in ("true", "1", "yes")
        return cls(name=config.name, batched=config.max_batch_size > 0, cumulative=cumulative)

    def request(self, text: str, max_tokens: int, sampling: Sampling) -> service_pb2.ModelInferRequest:
        """One streaming request: the inputs shaped for this model, ``text_output`` requested, and the
        empty final response asked for (TensorRT-LLM's models end a stream with one; Triton drops it
        unless the request enables it, and the caller would then wait for a final flag forever)."""
        values: dict[str, object] = {
            "text_input": text.encode("utf-8"),
            "max_tokens": max_tokens,
            "stream": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            values["random_seed"] = sampling.seed
        shape = [1, 1] if self.batched else [1]
        request = service_pb2.ModelInferRequest(
            model_name=self.name,
            outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=TEXT_OUTPUT)],
        )
        request.parameters["triton_enable_empty_final_response"].bool_param = True
        for name, value in values.items():
            _, wire_type, element = _INPUTS[name]
            request.inputs.add(name=name, datatype=wire_type, shape=shape)
            # Packed with struct, not through NumPy arrays (13 us a request against 24-45 us, on the way to
            # Triton's first token); the same bytes (tests/generation: the fake Triton decodes them as Triton).
            if isinstance(value, bytes):
                request.raw_input_contents.append(struct.pack(element, len(value)) + value)
            else:
                request.raw_input_contents.append(struct.pack(element, value))
        return request


def text_output(response: service_pb2.ModelInferResponse) -> bytes | None:
    """The response's ``text_output`` (a batch of one string), or None when it has none."""
    for index, tensor in enumerate(response.outputs):
        if tensor.name == TEXT_OUTPUT:
            return b"".join(deserialize_bytes_tensor(response.raw_output_contents[index]))
    return None


def is_final(response: service_pb2.ModelInferResponse) -> bool:
    parameter = response.parameters.get("triton_final_response")
    return parameter is not None and parameter.bool_param


class TextDeltas:
    """The new text of each streamed ``text_output``, whole characters only.

    In delta mode the responses' bytes are decoded incrementally, so a character whose bytes span
    two responses comes out whole with the second. In cumulative mode each response is the whole
    text so far, decoded by the model (TensorRT-LLM's postprocessing) with a character it cannot
    complete yet shown as U+FFFD: what was already sent is cut off, and a trailing U+FFFD is held
    back until a later response completes it (or the stream ends).
    """

    def __init__(self, cumulative: bool) -> None:
        self._cumulative = cumulative
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._sent = ""
        self._last = b""

    def feed(self, raw: bytes) -> tuple[str, bool]:
        """The text to forward now, and whether this response carried a new token."""
        if not self._cumulative:
            return self._decoder.decode(raw), bool(raw)
        advanced = raw != self._last
        self._last = raw
        text = raw.decode("utf-8", errors="replace")
        if not text.startswith(self._sent):
            # Detokenizing more tokens changed text already forwarded (it cannot be taken back).
            log.warning("cumulative text_output rewrote text already sent; forwarding from the same length")
        new = text[len(self._sent) :].rstrip(REPLACEMENT)
        self._sent += new
        return new, advanced

    def finish(self) -> str:
        """What was held back, at the end of the stream."""
        if not self._cumulative:
            return self._decoder.decode(b"", final=True)
        rest = self._last.decode("utf-8", errors="replace")[len(self._sent) :]
        self._sent += rest
        return rest
