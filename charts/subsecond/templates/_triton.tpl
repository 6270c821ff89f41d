{{/* Triton with TensorRT-LLM: what the generation pod and the engine-build Job share. */}}

{{- define "subsecond.enginesClaim" -}}
{{- default (printf "%s-engines" (include "subsecond.fullname" .)) .Values.triton.engines.pvc.existingClaim }}
{{- end }}

{{/* The Triton model names (the values of generation.models), sorted, each once: Triton's MODELS. */}}
{{- define "subsecond.triton.models" -}}
{{- values .Values.generation.models | uniq | sortAlpha | join "," }}
{{- end }}

{{/*
KV_CACHE_FRACTIONS: `model=fraction,...`. Each model loaded in one Triton takes its own
kv_cache_free_gpu_mem_fraction of what is free when it loads, so the fractions must add up to at most
triton.kvCacheFraction; it is split by kvCacheWeight and rounded down to 3 decimals so rounding
never pushes the sum over.
*/}}
{{- define "subsecond.triton.kvCacheFractions" -}}
{{- $declared := .Values.triton.engines.models }}
{{- $models := splitList "," (include "subsecond.triton.models" .) }}
{{- $total := 0.0 }}
{{- range $models }}
{{- $total = addf $total (dig . "kvCacheWeight" 1 $declared) }}
{{- end }}
{{- $pairs := list }}
{{- range $models }}
{{- $share := divf (mulf $.Values.triton.kvCacheFraction (dig . "kvCacheWeight" 1 $declared)) $total }}
{{- $pairs = append $pairs (printf "%s=%.3f" . (divf (floor (mulf $share 1000)) 1000)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
GB of memory of one GPU of a `nvidia.com/gpu.product` label, or "" when the table lacks it. The GPU
operator writes the product name NVML reports with spaces as dashes, and the suffix varies by
driver and form factor (NVIDIA-H200, NVIDIA-H200-141GB-HBM3e), so the table matches prefixes, most
specific first. MIG slices and shared (time-sliced) GPUs are not whole GPUs: unknown on purpose.
*/}}
{{- define "subsecond.triton.gpuMemoryGB" -}}
{{- $table := list
  (list "^NVIDIA-GB200" 186) (list "^NVIDIA-B200" 180) (list "^NVIDIA-H200" 141)
  (list "^NVIDIA-GH200-144G" 144) (list "^NVIDIA-GH200" 96) (list "^NVIDIA-H100-NVL" 94)
  (list "^NVIDIA-H100" 80) (list "^NVIDIA-H800" 80) (list "^NVIDIA-H20(-|$)" 96)
  (list "^NVIDIA-A100.*80GB" 80) (list "^NVIDIA-A100" 40) (list "^NVIDIA-L40" 48)
  (list "^NVIDIA-L4(-|$)" 24) (list "^NVIDIA-A10G?(-|$)" 24) }}
{{- $found := "" }}
{{- if not (regexMatch "-MIG-|-SHARED$" .) }}
{{- range $table }}
{{- if and (not $found) (regexMatch (index . 0) $) }}
{{- $found = index . 1 | toString }}
{{- end }}
{{- end }}
{{- end }}
{{- $found }}
{{- end }}

{{/*
Refuses engines that cannot load: every served model's weights (parameters x bytes per parameter of
the quantization, or of the dtype when unquantized), all models together since they share the GPUs,
split over the tensor-parallel ranks, must fit in 80 % of the smallest GPU the pod may land on. The
other 20 % and more is what the KV caches, activations and CUDA context get.
*/}}
{{- define "subsecond.triton.checkFit" -}}
{{- $triton := .Values.triton }}
{{- $bytes := get (dict "none" 2.0 "fp8" 1.0 "int8_wo" 1.0 "int4_awq" 0.5) $triton.engines.quantization }}
{{- $memory := float64 $triton.gpuMemoryGB }}
{{- $smallest := "triton.gpuMemoryGB" }}
{{- if not $memory }}
{{- if not $triton.gpuProducts }}
{{- fail "triton.gpuProducts is empty: list the GPU products the pods may run on (or set triton.gpuMemoryGB) so the chart can check that the models fit" }}
{{- end }}
{{- range $triton.gpuProducts }}
{{- $gb := include "subsecond.triton.gpuMemoryGB" . }}
{{- if not $gb }}
{{- fail (printf "triton.gpuProducts: the chart does not know the memory of %q (MIG slices and shared GPUs are refused): set triton.gpuMemoryGB" .) }}
{{- end }}
{{- if or (not $memory) (lt (float64 $gb) $memory) }}
{{- $memory = float64 $gb }}
{{- $smallest = . }}
{{- end }}
{{- end }}
{{- end }}
{{- $need := 0.0 }}
{{- $parts := list }}
{{- range splitList "," (include "subsecond.triton.models" .) }}
{{- $model := get $triton.engines.models . }}
{{- if not $model }}
{{- fail (printf "triton.engines.models has no entry for %q: declare its size, e.g. {%s: {parametersBillions: 8}}, so the chart can check that it fits the GPUs" . .) }}
{{- end }}
{{- $weights := mulf $model.parametersBillions $bytes }}
{{- $need = addf $need $weights }}
{{- $parts = append $parts (printf "%s %.1f GB" . $weights) }}
{{- end }}
{{- $perGPU := divf $need $triton.tensorParallelSize }}
{{- if gt $perGPU (mulf $memory 0.8) }}
{{- fail (printf "the models do not fit: weights at %s/%s (%s) need %.1f GB per GPU over %v GPU(s), more than 80%% of the %.0f GB of %s (%.1f GB); quantize (triton.engines.quantization), raise triton.tensorParallelSize, or choose larger GPUs" $triton.engines.quantization $triton.engines.dtype (join ", " $parts) $perGPU $triton.tensorParallelSize $memory $smallest (mulf $memory 0.8)) }}
{{- end }}
{{- end }}

{{/*
The environment both Triton containers get, the build Job's and the serving pod's, with the same
values (the interface of images/triton/build-engines and launch-triton, images/README.md).
*/}}
{{- define "subsecond.triton.sharedEnv" -}}
{{- $triton := .Values.triton }}
{{- $engines := $triton.engines }}
TP_SIZE: {{ $triton.tensorParallelSize | toString | quote }}
MODELS: {{ include "subsecond.triton.models" . | quote }}
ENGINE_ROOT: /engines
DTYPE: {{ $engines.dtype }}
QUANTIZATION: {{ $engines.quantization }}
{{- with $engines.calibrationDataset }}
CALIBRATION_DATASET: {{ printf "/checkpoints/%s" . | quote }}
{{- end }}
MAX_BATCH_SIZE: {{ $engines.maxBatchSize | toString | quote }}
MAX_INPUT_LEN: {{ $engines.maxInputLen | toString | quote }}
MAX_SEQ_LEN: {{ $engines.maxSeqLen | toString | quote }}
KV_CACHE_FRACTIONS: {{ include "subsecond.triton.kvCacheFractions" . | quote }}
{{- end }}

{{/*
The Triton container (the part the serving pod and the build Job share): image, the shared
environment plus the caller's, GPUs, /dev/shm for NCCL, the engine volume, a small /tmp.
(dict "root" $ "command" (list ...) "writable" bool "env" (dict ...))
*/}}
{{- define "subsecond.triton.container" -}}
{{- $triton := .root.Values.triton }}
name: triton
image: {{ include "subsecond.image" (dict "root" .root "image" $triton.image) }}
imagePullPolicy: {{ $triton.image.pullPolicy }}
command:
  {{- toYaml .command | nindent 2 }}
env:
  {{- range $name, $value := merge (dict) (default (dict) .env) $triton.env (include "subsecond.triton.sharedEnv" .root | fromYaml) }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
  {{- end }}
resources:
  requests:
    {{- toYaml $triton.resources.requests | nindent 4 }}
    {{- if gt (int $triton.gpus) 0 }}
    nvidia.com/gpu: {{ $triton.gpus }}
    {{- end }}
  limits:
    {{- toYaml $triton.resources.limits | nindent 4 }}
    {{- if gt (int $triton.gpus) 0 }}
    nvidia.com/gpu: {{ $triton.gpus }}
    {{- end }}
securityContext:
  {{- toYaml $triton.containerSecurityContext | nindent 2 }}
volumeMounts:
  {{- if ne $triton.engines.source "bundled" }}
  - name: engines
    mountPath: /engines
    readOnly: {{ not .writable }}
  {{- end }}
  - name: dshm
    mountPath: /dev/shm
  - name: triton-tmp
    mountPath: /tmp
{{- end }}

{{/*
/dev/shm in memory, sized for NCCL between the ranks, and a small writable /tmp: MPI's session files
and, in the serving pod, the model repository launch-triton writes at start (a few KB of configs).
Engines are GBs: a build works on the engines volume, never here, and the 1 GiB limit evicts a pod
that tries rather than letting it fill the node's disk.
*/}}
{{- define "subsecond.triton.volumes" -}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.triton.shmSize }}
- name: triton-tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}
