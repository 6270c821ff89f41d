"""The entry model's request encoding against tritonclient's own: the raw inputs are packed with ``struct``
(cheaper on the way to Triton's first token) and must stay byte for byte what NumPy and tritonclient's
``serialize_byte_tensor`` give, which is what Triton decodes."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from subsecond.generation.entry_model import EntryModel
from subsecond.kit.prompt_identity import Sampling

NUMPY_TYPES = {"BYTES": np.object_, "INT32": np.int32, "BOOL": np.bool_, "FP32": np.float32, "UINT64": np.uint64}


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.7, top_p=0.9, seed=2**63 + 5)])
def test_every_raw_input_is_what_tritonclient_serialises(batched: bool, sampling: Sampling) -> None:
    text = "<|im_start|>user\nCafé, naïve — 日本語?<|im_end|>\n"
    request = EntryModel("m", batched=batched, cumulative=False).request(text, 77, sampling)

    values = {
        "text_input": text.encode("utf-8"),
        "max_tokens": 77,
        "stream": True,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        **({"random_seed": sampling.seed} if sampling.seed is not None else {}),
    }
    assert [tensor.name for tensor in request.inputs] == list(values)
    shape = [1, 1] if batched else [1]
    for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
        array = np.array([values[tensor.name]], dtype=NUMPY_TYPES[tensor.datatype]).reshape(shape)
        expected = serialize_byte_tensor(array).item() if tensor.datatype == "BYTES" else array.tobytes()
        assert (list(tensor.shape), raw) == (shape, expected), tensor.name
