"""A tier's entry model: TensorRT-LLM's BLS model, pointed at the tier's own pre/postprocessing.

The Dockerfile installs this file as ``tensorrt_llm_bls/1/model.py`` and keeps the backend's own
BLS model (tensorrtllm_backend v0.17.0, ``all_models/inflight_batcher_llm/tensorrt_llm_bls/1/model.py``)
beside it as ``upstream_model.py``. That release reads the tensorrt_llm model's name from the config
(``tensorrt_llm_model_name``) but names its preprocessing and postprocessing models in code
("preprocessing", "postprocessing"); with several tiers in one Triton each tier has its own pair
(different tokenizers), so launch-triton writes their names into the config as
``preprocessing_model_name`` and ``postprocessing_model_name`` and this subclass applies them. The
Python backend puts the model's version directory on ``sys.path``, as the upstream model's own
``from lib.triton_decoder import ...`` relies on.
"""

from __future__ import annotations

import json
from typing import Any

from upstream_model import TritonPythonModel as _UpstreamBLS  # type: ignore[import-not-found]


class TritonPythonModel(_UpstreamBLS):  # type: ignore[misc]
    def initialize(self, args: dict[str, Any]) -> None:
        super().initialize(args)
        parameters = json.loads(args["model_config"])["parameters"]
        # The decoder reads these attributes on every request (TritonDecoder.preprocess/_postprocess).
        self.decoder.preproc_model_name = parameters["preprocessing_model_name"]["string_value"]
        self.decoder.postproc_model_name = parameters["postprocessing_model_name"]["string_value"]
