{{/*
Shared templates: names, labels, images, and the one workload template the four Python
services (router, cache, embedding, generation) are rendered from.
*/}}

{{/* The four gRPC services, in request-path order. */}}
{{- define "subsecond.services" -}}
router cache embedding generation
{{- end }}

{{/* Each service's gRPC and metrics ports: the defaults of its settings.py. */}}
{{- define "subsecond.grpcPort" -}}
{{- get (dict "router" 50051 "cache" 50052 "embedding" 50053 "generation" 50054) . -}}
{{- end }}
{{- define "subsecond.metricsPort" -}}
{{- get (dict "router" 9461 "cache" 9462 "embedding" 9463 "generation" 9464) . -}}
{{- end }}

{{- define "subsecond.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-subsecond, or the release name alone when it already says subsecond. */}}
{{- define "subsecond.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: (dict "root" $ "component" "router"). */}}
{{- define "subsecond.componentName" -}}
{{- printf "%s-%s" (include "subsecond.fullname" .root | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" }}
{{- end }}

{{- define "subsecond.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never the chart version. */}}
{{- define "subsecond.selectorLabels" -}}
app.kubernetes.io/name: {{ include "subsecond.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of every object: the selector labels plus version and ownership. */}}
{{- define "subsecond.labels" -}}
{{ include "subsecond.selectorLabels" . }}
app.kubernetes.io/part-of: subsecond
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "subsecond.chart" .root }}
{{- end }}

{{/* An image reference from {repository, tag} with the chart's appVersion as the default tag. */}}
{{- define "subsecond.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Whether the operator scales this component: a LatencySLO object is rendered for it. */}}
{{- define "subsecond.operatorScaled" -}}
{{- $values := index .root.Values .component }}
{{- if and .root.Values.operator.enabled $values.latencySLO $values.latencySLO.enabled }}true{{ end }}
{{- end }}

{{/* host:port of a service inside the release. */}}
{{- define "subsecond.address" -}}
{{- printf "%s:%s" (include "subsecond.componentName" .) (include "subsecond.grpcPort" .component) }}
{{- end }}

{{/* Topology spread over zones and nodes for one component's pods. */}}
{{- define "subsecond.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "subsecond.selectorLabels" $ | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end }}

{{/* A Redis URL environment variable: from the external Secret, the external URL, or the in-chart Redis. */}}
{{- define "subsecond.redisUrlEnv" -}}
- name: {{ .name }}
{{- $redis := .root.Values.redis }}
{{- if eq $redis.mode "external" }}
{{- if $redis.external.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ $redis.external.existingSecret }}
      key: {{ $redis.external.secretKey }}
{{- else }}
  value: {{ required "redis.external.url or redis.external.existingSecret is required when redis.mode is external" $redis.external.url | quote }}
{{- end }}
{{- else }}
  value: {{ printf "redis://%s:6379/0" (include "subsecond.componentName" (dict "root" .root "component" "redis")) | quote }}
{{- end }}
{{- end }}

{{/*
Extra settings a user adds as {NAME: value}; the schema keeps them off the names the chart sets.
(dict "prefix" "SUBSECOND_ROUTER_" "settings" .Values.router.settings)
*/}}
{{- define "subsecond.extraEnv" -}}
{{- range $name, $value := .settings }}
- name: {{ printf "%s%s" $.prefix $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The Deployment of one Python service. Everything that differs between the four lives in
templates/<service>.yaml as "subsecond.<service>.env" (its environment) and
"subsecond.<service>.pod" (a YAML map with optional volumes, volumeMounts, initContainers,
containers, nodeSelector, affinity and tolerations added to the pod).
*/}}
{{- define "subsecond.deployment" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- $values := index $root.Values $component }}
{{- $pod := include (printf "subsecond.%s.pod" $component) $root | fromYaml }}
{{- $grace := int $root.Values.shutdownGraceSeconds }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "subsecond.componentName" . }}
  labels:
    {{- include "subsecond.labels" . | nindent 4 }}
  {{- if include "subsecond.operatorScaled" . }}
  annotations:
    subsecond.dev/replicas: managed by LatencySLO {{ include "subsecond.componentName" . }}
  {{- end }}
spec:
  {{- /* A LatencySLO owns the replica count: the chart never sets it, so an upgrade does not undo the operator. */}}
  {{- if not (include "subsecond.operatorScaled" .) }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "subsecond.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "subsecond.labels" . | nindent 8 }}
      {{- with $values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "subsecond.fullname" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ add $grace 10 }}
      {{- include "subsecond.topologySpread" . | nindent 6 }}
      {{- with merge (dict) $values.nodeSelector (default (dict) $pod.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity | default $pod.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with concat $values.tolerations (default (list) $pod.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $pod.initContainers }}
      initContainers:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $component }}
          image: {{ include "subsecond.image" (dict "root" $root "image" $root.Values.image) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [python, -m, subsecond.{{ $component }}]
          ports:
            - name: grpc
              containerPort: {{ include "subsecond.grpcPort" $component }}
            - name: metrics
              containerPort: {{ include "subsecond.metricsPort" $component }}
          env:
            {{- $prefix := printf "SUBSECOND_%s_" (upper $component) }}
            - name: {{ $prefix }}HOST
              value: 0.0.0.0
            - name: {{ $prefix }}PORT
              value: {{ include "subsecond.grpcPort" $component | quote }}
            - name: {{ $prefix }}METRICS_PORT
              value: {{ include "subsecond.metricsPort" $component | quote }}
            - name: {{ $prefix }}LOG_LEVEL
              value: {{ $root.Values.logLevel }}
            - name: {{ $prefix }}SHUTDOWN_GRACE_SECONDS
              value: {{ $grace | quote }}
            {{- include (printf "subsecond.%s.env" $component) $root | nindent 12 }}
            {{- include "subsecond.extraEnv" (dict "prefix" $prefix "settings" $values.settings) | nindent 12 }}
          {{- /* Native gRPC probes on grpc.health.v1: NOT_SERVING while warming up and while draining. */}}
          {{- $startup := $values.startupProbe }}
          {{- $failures := int $startup.failureThreshold }}
          {{- if and (eq $component "generation") $root.Values.triton.enabled }}
          {{- /* Generation turns SERVING only once Triton's models are ready: wait at least as long as Triton may take. */}}
          {{- $failures = max $failures (add1 (div (int $root.Values.triton.startupSeconds) (int $startup.periodSeconds))) }}
          {{- end }}
          startupProbe:
            grpc:
              port: {{ include "subsecond.grpcPort" $component }}
            periodSeconds: {{ $startup.periodSeconds }}
            failureThreshold: {{ $failures }}
          readinessProbe:
            grpc:
              port: {{ include "subsecond.grpcPort" $component }}
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            grpc:
              port: {{ include "subsecond.grpcPort" $component }}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 6
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with $pod.volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
        {{- with $pod.containers }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with $pod.volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* The Service of one Python service: gRPC and metrics, plus any extra ports (headless but the router's). */}}
{{- define "subsecond.service" -}}
{{- $values := index .root.Values .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "subsecond.componentName" . }}
  labels:
    {{- include "subsecond.labels" . | nindent 4 }}
  {{- with dig "service" "annotations" dict $values }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ dig "service" "type" "ClusterIP" $values }}
  {{- if ne .component "router" }}
  {{- /* Inner services are headless: their name resolves to every ready pod, and the router's
  round-robin channels spread over them (a virtual IP would pin each router to one pod). */}}
  clusterIP: None
  {{- end }}
  selector:
    {{- include "subsecond.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ dig "service" "port" (include "subsecond.grpcPort" .component | int) $values }}
      targetPort: grpc
      appProtocol: grpc
    - name: metrics
      port: {{ include "subsecond.metricsPort" .component }}
      targetPort: metrics
    {{- range .extraPorts }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
    {{- end }}
{{- end }}
