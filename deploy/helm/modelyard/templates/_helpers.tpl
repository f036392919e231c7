{{/* Object names: RELEASE-modelyard, shortened to 63 characters (DNS labels). */}}
{{- define "modelyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "modelyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modelyard.selector" -}}
app.kubernetes.io/name: {{ include "modelyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "modelyard.secretName" -}}
{{- if .Values.secrets.create -}}
{{- include "modelyard.fullname" . -}}
{{- else -}}
{{- required "secrets.existingSecret is required when secrets.create is false" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The engine objects' name: RELEASE-modelyard-KIND-NAME. Argument: (list $ kind name). */}}
{{- define "modelyard.engineName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s-%s" (include "modelyard.fullname" $root) (index . 1) (index . 2) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Environment every modelyard container gets: the shared database, logging. */}}
{{- define "modelyard.baseEnv" -}}
- name: MODELYARD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "modelyard.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
- name: MODELYARD_LOG_LEVEL
  value: {{ .Values.common.logLevel | quote }}
- name: MODELYARD_LOG_FORMAT
  value: {{ .Values.common.logFormat | quote }}
{{- with .Values.common.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* What a gateway adds: the key pepper, Redis, the first admin key. */}}
{{- define "modelyard.gatewayEnv" -}}
{{- $secret := include "modelyard.secretName" . -}}
{{ include "modelyard.baseEnv" . }}
- name: MODELYARD_KEY_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.keyPepper }}
- name: MODELYARD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.redisUrl }}
      optional: true
- name: MODELYARD_ADMIN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.adminKey }}
      optional: true
{{- end -}}

{{/* An engine's headless Service, in-cluster. Argument: (list $ kind name). */}}
{{- define "modelyard.engineHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.svc" (include "modelyard.engineName" .) $root.Release.Namespace -}}
{{- end -}}

{{/* The gateway's --engine-url of a llama.cpp engine: its registry version = the headless Service's name, which
the gateway re-resolves into one replica per ready pod (dns+). Argument: (list $ engine). */}}
{{- define "modelyard.engineURLArg" -}}
{{- $root := index . 0 -}}
{{- $e := index . 1 -}}
{{- printf "%s=dns+http://%s:%d" $e.model (include "modelyard.engineHost" (list $root "llamacpp" $e.name)) (int $root.Values.engineDefaults.port) -}}
{{- end -}}

{{/* The custom metric (custom.metrics.k8s.io, served by prometheus-adapter with prometheus-adapter/rules.yaml) an
engine HPA scales on. Argument: (list kind metric), metric = queue (requests waiting for a slot) | inflight
(requests being decoded). llama.cpp pods expose llama-server's gauges under modelyard_engine_* names; vLLM's
vllm:num_requests_* lose their colon in the adapter. */}}
{{- define "modelyard.engineMetric" -}}
{{- $kind := index . 0 -}}
{{- $metric := index . 1 -}}
{{- if eq $kind "llamacpp" -}}
{{- if eq $metric "queue" -}}modelyard_engine_llamacpp_requests_deferred{{- else -}}modelyard_engine_llamacpp_requests_processing{{- end -}}
{{- else -}}
{{- if eq $metric "queue" -}}vllm_num_requests_waiting{{- else -}}vllm_num_requests_running{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.deploymentsDoc" -}}
{{- /* The deployments document the gateways apply (MODELYARD_DEPLOYMENTS; stored in the database, so every
replica serves it): one route per engine, named after it, merged with gateway.deployments. A llama.cpp engine's
target is its registry version (the gateways find its pods through --engine-url); a vLLM engine's is a remote URL,
its headless Service. */ -}}
{{- $routes := dict -}}
{{- if .Values.gateway.generateRoutes -}}
{{- range .Values.llamacpp -}}
{{- $_ := set $routes .name (dict "targets" (dict "engine" (dict "model" .model))) -}}
{{- end -}}
{{- range .Values.vllm.engines -}}
{{- $url := printf "http://%s:%d/v1" (include "modelyard.engineHost" (list $ "vllm" .name)) (int $.Values.vllm.port) -}}
{{- $_ := set $routes .name (dict "targets" (dict "engine" (dict "url" (list $url) "upstream_model" (default .model .servedModelName)))) -}}
{{- end -}}
{{- end -}}
{{- toYaml (mergeOverwrite (dict "routes" $routes) (deepCopy .Values.gateway.deployments)) -}}
{{- end -}}
