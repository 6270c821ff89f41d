"""Triton Python-backend model: a GGUF chat model run by llama.cpp, with TensorRT-LLM's ensemble I/O.

Runs inside Triton's Python backend stub (``triton_python_backend_utils`` exists only there).
Requests are decoupled: ``execute`` hands each request to one worker thread, which owns the
llama.cpp model (it is not thread-safe), so generations run one at a time and Triton's thread is
never blocked. A request is answered token by token; the last response carries the final flag and
``num_input_tokens`` / ``num_output_tokens``. A cancelled request stops between two tokens.
"""

import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _optional_scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy().reshape(-1)[0].item()


def _strings(value):
    return pb_utils.Tensor("text_output", np.array([value.encode("utf-8")], dtype=np.object_))


def _counts(prompt_tokens, completion_tokens):
    return [
        pb_utils.Tensor("num_input_tokens", np.array([prompt_tokens], dtype=np.int32)),
        pb_utils.Tensor("num_output_tokens", np.array([completion_tokens], dtype=np.int32)),
    ]


def _messages(text):
    """A JSON array of {role, content} is a conversation; any other text is one user message."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if (
        isinstance(parsed, list)
        and parsed
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in parsed
        )
    ):
        return [{"role": m["role"], "content": m["content"]} for m in parsed]
    return [{"role": "user", "content": text}]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        package = importlib.util.find_spec(parameters["gguf_package"])
        if package is None or package.origin is None:
            raise pb_utils.TritonModelException(f"package {parameters['gguf_package']} is not installed")
        (gguf,) = Path(package.origin).parent.glob("*.gguf")
        self._llm = Llama(
            model_path=str(gguf),
            n_ctx=int(parameters.get("n_ctx", "2048")),
            n_threads=int(parameters.get("n_threads", "2")),
            verbose=False,
        )
        metadata = self._llm.metadata
        eos = self._llm.detokenize([self._llm.token_eos()], special=True).decode("utf-8", errors="ignore")
        bos = self._llm.detokenize([self._llm.token_bos()], special=True).decode("utf-8", errors="ignore")
        self._formatter = Jinja2ChatFormatter(
            template=metadata["tokenizer.chat_template"], eos_token=eos, bos_token=bos
        )
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")

    def execute(self, requests):
        for request in requests:
            self._worker.submit(self._generate, request)
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
            formatted = self._formatter(messages=_messages(text))
            prompt_tokens = len(self._llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True))
            pieces = self._llm.create_completion(
                formatted.prompt,
                max_tokens=limit,
                temperature=temperature,
                top_p=top_p,
                seed=None if seed is None else int(seed) % (2**32),
                stop=formatted.stop,
                stream=True,
            )
            generated, whole = 0, []
            for piece in pieces:
                if request.is_cancelled():
                    pieces.close()  # stops llama.cpp before the next token
                    break
                choice = piece["choices"][0]
                if choice["finish_reason"] is not None:  # llama-cpp's closing item, not a token
                    break
                generated += 1
                token_text = choice["text"]
                if stream and token_text:
                    sender.send(pb_utils.InferenceResponse(output_tensors=[_strings(token_text)]))
                elif not stream:
                    whole.append(token_text)
            last = "" if stream else "".join(whole)
            # The final response ends the request: nothing may touch it afterwards.
            sender.send(
                pb_utils.InferenceResponse(output_tensors=[_strings(last), *_counts(prompt_tokens, generated)]),
                flags=FINAL,
            )
        except Exception as error:  # reported to the client; the model stays up for the next request
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"generation failed: {error}")), flags=FINAL
            )

    def finalize(self):
        self._worker.shutdown(wait=True, cancel_futures=True)
