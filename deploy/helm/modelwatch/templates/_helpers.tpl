{{/* The chart's name, or nameOverride. */}}
{{- define "modelwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: fullnameOverride, or the release name when it
already holds the chart's name, or <release>-<name>.
*/}}
{{- define "modelwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "modelwatch.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; they never change for a release. */}}
{{- define "modelwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelwatch.labels" -}}
helm.sh/chart: {{ include "modelwatch.chart" . }}
{{ include "modelwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "modelwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The fewest replicas the release runs: what a PodDisruptionBudget can hold. */}}
{{- define "modelwatch.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
GOMEMLIMIT: goMemLimit as given, nothing for off, and for auto 85% of the
memory limit (in Mi or Gi), or nothing without a limit.
*/}}
{{- define "modelwatch.goMemLimit" -}}
{{- $v := .Values.goMemLimit | default "auto" }}
{{- if eq $v "auto" }}
{{- $limit := toString (dig "limits" "memory" "" .Values.resources) }}
{{- if $limit }}
{{- if not (regexMatch "^[0-9]+(Mi|Gi)$" $limit) }}
{{- fail (printf "goMemLimit: auto needs resources.limits.memory in Mi or Gi, not %q; set goMemLimit to a size such as 2500MiB, or off" $limit) }}
{{- end }}
{{- $mib := regexFind "^[0-9]+" $limit | atoi }}
{{- if hasSuffix "Gi" $limit }}{{ $mib = mul $mib 1024 }}{{ end }}
{{- printf "%dMiB" (div (mul $mib 85) 100) }}
{{- end }}
{{- else if ne $v "off" }}
{{- $v }}
{{- end }}
{{- end }}
