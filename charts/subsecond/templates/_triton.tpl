{{/* Triton with TensorRT-LLM: what the generation pod and the engine-build Job share. */}}

{{- define "subsecond.enginesClaim" -}}
{{- default (printf "%s-engines" (include "subsecond.fullname" .)) .Values.triton.engines.pvc.existingClaim }}
{{- end }}

{{/*
The Triton container (the part the serving pod and the build Job share): image, tensor-parallel
size, GPUs, /dev/shm for NCCL, the engine volume.
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
  - name: TP_SIZE
    value: {{ $triton.tensorParallelSize | quote }}
  - name: MODELS
    value: {{ values .root.Values.generation.models | uniq | sortAlpha | join "," | quote }}
  - name: ENGINE_ROOT
    value: /engines
  {{- range $name, $value := merge (dict) (default (dict) .env) $triton.env }}
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

{{/* /dev/shm in memory, sized for NCCL between the ranks, and a writable /tmp for MPI. */}}
{{- define "subsecond.triton.volumes" -}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.triton.shmSize }}
- name: triton-tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}
