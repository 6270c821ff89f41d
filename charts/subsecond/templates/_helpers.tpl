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

{{/* A Redis URL environment variable: from the external Secret or URL, built from redis.cluster or redis.sentinel, or the in-chart Redis. */}}
{{- define "subsecond.redisUrlEnv" -}}
{{- include "subsecond.redisPasswordEnv" .root }}
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
{{- else if eq $redis.mode "cluster" }}
  value: {{ include "subsecond.redisNodesUrl" (dict "mode" "cluster" "spec" $redis.cluster "path" "") | quote }}
{{- else if eq $redis.mode "sentinel" }}
  {{- $sentinel := $redis.sentinel }}
  {{- $query := ternary "?sentinel_password=$(REDIS_SENTINEL_PASSWORD)" "" (and (ne $sentinel.auth.existingSecret "") (ne $sentinel.auth.sentinelPasswordKey "")) }}
  value: {{ include "subsecond.redisNodesUrl" (dict "mode" "sentinel" "spec" $sentinel "path" (printf "/%s/%d%s" $sentinel.serviceName (int $sentinel.db) $query)) | quote }}
{{- else }}
  {{- /* The password comes from its Secret through REDIS_PASSWORD, declared just before: it is in no ConfigMap or manifest. */}}
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "subsecond.componentName" (dict "root" .root "component" "redis")) | quote }}
{{- end }}
{{- end }}

{{/* A Redis Cluster's or Sentinel group's URL (kit/redis_client.py): its nodes, and the password from REDIS_PASSWORD when it has a Secret. */}}
{{- define "subsecond.redisNodesUrl" -}}
{{- $nodes := required (printf "redis.%s.nodes is required when redis.mode is %s" .mode .mode) (join "," .spec.nodes) }}
{{- $credentials := ternary ":$(REDIS_PASSWORD)@" "" (ne .spec.auth.existingSecret "") }}
{{- printf "%s+%s://%s%s%s" (ternary "rediss" "redis" .spec.tls) .mode $credentials $nodes .path }}
{{- end }}

{{/* The Redis password as REDIS_PASSWORD (and the sentinels' as REDIS_SENTINEL_PASSWORD): the in-chart Redis's, or that of redis.cluster or redis.sentinel when they name a Secret; nothing with redis.mode external, whose Secret holds the whole URL. */}}
{{- define "subsecond.redisPasswordEnv" -}}
{{- $redis := .Values.redis }}
{{- if eq $redis.mode "internal" }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "subsecond.authSecretName" (dict "root" . "component" "redis") }}
      key: {{ $redis.internal.auth.secretKey }}
{{- else if and (has $redis.mode (list "cluster" "sentinel")) (index $redis $redis.mode).auth.existingSecret }}
{{- $auth := (index $redis $redis.mode).auth }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret }}
      key: {{ $auth.secretKey }}
{{- if and (eq $redis.mode "sentinel") $auth.sentinelPasswordKey }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret }}
      key: {{ $auth.sentinelPasswordKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* Secret of an in-chart backend's credential ("redis" or "qdrant"): yours, or the generated <name>-auth. */}}
{{- define "subsecond.authSecretName" -}}
{{- $auth := (index .root.Values .component).internal.auth }}
{{- $auth.existingSecret | default (printf "%s-auth" (include "subsecond.componentName" .)) }}
{{- end }}

{{/*
The generated credential of an in-chart backend, unless existingSecret names yours: random at
install, then read back from the cluster (lookup) so that an upgrade keeps it. `helm template`
cannot look up, so each render of it shows a new one.
*/}}
{{- define "subsecond.generatedAuthSecret" -}}
{{- $auth := (index .root.Values .component).internal.auth }}
{{- if not $auth.existingSecret }}
{{- $name := include "subsecond.authSecretName" . }}
{{- $stored := dig "data" $auth.secretKey "" (lookup "v1" "Secret" .root.Release.Namespace $name | default dict) }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  labels:
    {{- include "subsecond.labels" . | nindent 4 }}
type: Opaque
data:
  {{ $auth.secretKey }}: {{ ternary $stored (randAlphaNum 40 | b64enc) (ne $stored "") }}
{{- end }}
{{- end }}

{{/* Who may call each inner service: the router calls cache and generation, the cache embeds, and so does the
router when it serves the HTTP API's /v1/embeddings. */}}
{{- define "subsecond.allowedCallers" -}}
{{- $embedding := ternary (list "cache" "router") (list "cache") .root.Values.http.enabled }}
{{- $callers := get (dict "cache" (list "router") "generation" (list "router") "embedding" $embedding) .component | default list }}
{{- $names := list }}
{{- range $callers }}
{{- $names = append $names (include "subsecond.componentName" (dict "root" $.root "component" .)) }}
{{- end }}
{{- join "," $names -}}
{{- end }}

{{/* The Secret holding one service's certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "subsecond.tlsSecretName" -}}
{{- $secret := get .root.Values.tls.existingSecrets .component }}
{{- if .root.Values.tls.certManager.issuerRef.name }}
{{- printf "%s-tls" (include "subsecond.componentName" .) }}
{{- else }}
{{- required (printf "tls.enabled needs tls.certManager.issuerRef.name or tls.existingSecrets.%s" .component) $secret }}
{{- end }}
{{- end }}

{{- define "subsecond.tlsDirectory" -}}
/etc/subsecond/tls
{{- end }}

{{/*
TLS settings of one service (with tls.enabled): its certificate to serve and to present to whom
it calls, the CA its channels verify, client certificates required on the inner services (the
router's public port takes clients' API keys instead), and the callers it accepts. A service's
name in certificates and checks is its object name, <release>-subsecond-<service>.
*/}}
{{- define "subsecond.tlsEnv" -}}
{{- if .root.Values.tls.enabled }}
{{- $prefix := printf "SUBSECOND_%s_" (upper .component) }}
{{- $directory := include "subsecond.tlsDirectory" . }}
- name: {{ $prefix }}TLS_CERT_FILE
  value: {{ $directory }}/tls.crt
- name: {{ $prefix }}TLS_KEY_FILE
  value: {{ $directory }}/tls.key
- name: {{ $prefix }}TLS_CA_FILE
  value: {{ $directory }}/ca.crt
- name: {{ $prefix }}IDENTITY
  value: {{ include "subsecond.componentName" . }}
{{- with include "subsecond.allowedCallers" . }}
- name: {{ $prefix }}TLS_CLIENT_CA_FILE
  value: {{ $directory }}/ca.crt
- name: {{ $prefix }}ALLOWED_CALLERS
  value: {{ . | quote }}
{{- end }}
{{- if .root.Values.tls.scraperCertificate }}
- name: {{ $prefix }}METRICS_CLIENT_CA_FILE
  value: {{ $directory }}/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/*
How the kubelet asks a service for grpc.health.v1: natively in plaintext, or, with TLS, by
running the kit's health probe in the container (the native probe speaks no TLS, and a
plaintext health port would be a plaintext listener).
*/}}
{{- define "subsecond.healthProbe" -}}
{{- if .root.Values.tls.enabled }}
exec:
  command: [python, -m, subsecond.kit.health_probe, {{ .component }}]
{{- else }}
grpc:
  port: {{ include "subsecond.grpcPort" .component }}
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
            {{- with $pod.ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
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
            {{- include "subsecond.tlsEnv" . | trim | nindent 12 }}
            {{- include (printf "subsecond.%s.env" $component) $root | nindent 12 }}
            {{- include "subsecond.extraEnv" (dict "prefix" $prefix "settings" $values.settings) | nindent 12 }}
            {{- with $root.Values.tracing.otlpEndpoint }}
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: {{ . | quote }}
            - name: OTEL_SERVICE_NAME
              value: subsecond-{{ $component }}
            {{- end }}
            {{- range $name, $value := $root.Values.tracing.env }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
          {{- /* Probes on grpc.health.v1: NOT_SERVING while warming up and while draining. */}}
          {{- $startup := $values.startupProbe }}
          {{- $failures := int $startup.failureThreshold }}
          {{- if and (eq $component "generation") $root.Values.triton.enabled }}
          {{- /* Generation turns SERVING only once Triton's models are ready: wait at least as long as Triton may take. */}}
          {{- $failures = max $failures (add1 (div (int $root.Values.triton.startupSeconds) (int $startup.periodSeconds))) }}
          {{- end }}
          {{- /* The TLS probe starts a Python process: give it more than the native probe's 1 s. */}}
          {{- $timeout := ternary 5 1 $root.Values.tls.enabled }}
          startupProbe:
            {{- include "subsecond.healthProbe" . | trim | nindent 12 }}
            timeoutSeconds: {{ $timeout }}
            periodSeconds: {{ $startup.periodSeconds }}
            failureThreshold: {{ $failures }}
          readinessProbe:
            {{- include "subsecond.healthProbe" . | trim | nindent 12 }}
            timeoutSeconds: {{ $timeout }}
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            {{- include "subsecond.healthProbe" . | trim | nindent 12 }}
            periodSeconds: 10
            timeoutSeconds: {{ max $timeout 3 }}
            failureThreshold: 6
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $root.Values.tls.enabled }}
            - name: tls
              mountPath: {{ include "subsecond.tlsDirectory" . }}
              readOnly: true
            {{- end }}
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
        {{- if $root.Values.tls.enabled }}
        {{- /* A Secret volume, not subPath mounts: the kubelet swaps in a renewed certificate, which the service reloads. */}}
        - name: tls
          secret:
            secretName: {{ include "subsecond.tlsSecretName" . }}
            defaultMode: 0440
        {{- end }}
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
