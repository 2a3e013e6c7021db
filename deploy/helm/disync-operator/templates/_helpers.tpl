{{/* The name every object is called after: fullnameOverride; else the release name, or "<release>-<name>" when it
lacks the chart's name (nameOverride replaces the chart's name there). */}}
{{- define "disync.fullname" -}}
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

{{/* The ServiceAccount the pods run as: the chart's own (serviceAccount.create), or one made elsewhere (e.g. by
Terraform, for RRSA) named by serviceAccount.name. */}}
{{- define "disync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "disync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the operator goes: namespace.name, else the release's namespace. With namespace.create the chart makes
that namespace, so it must not be the release's own (Helm records the release there before anything is created). */}}
{{- define "disync.namespace" -}}
{{- if .Values.namespace.create -}}
{{- required "namespace.create needs namespace.name: the namespace to create (not -n, where Helm records the release and which must exist)" .Values.namespace.name -}}
{{- else -}}
{{- default .Release.Namespace .Values.namespace.name -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object: the same as deploy/'s, plus Helm's own. */}}
{{- define "disync.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's pods, as the Deployment, the PodDisruptionBudget and the Service select them. */}}
{{- define "disync.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "disync.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The ConfigMap's data: every setting as DISYNC_<UPPER_SNAKE>, lists and maps as JSON, whole numbers as integers
(a values file's 2097152 is a float to Helm, and toString would write 2.097152e+06, which the operator refuses). */}}
{{- define "disync.config" -}}
{{- range $key, $value := .Values.settings }}
{{- if not (kindIs "invalid" $value) }}
DISYNC_{{ $key | snakecase | upper }}: {{ if or (kindIs "slice" $value) (kindIs "map" $value) }}{{ toJson $value | quote }}{{ else if and (kindIs "float64" $value) (eq (floor $value) $value) }}{{ $value | int64 | toString | quote }}{{ else }}{{ toString $value | quote }}{{ end }}
{{- end }}
{{- end }}
{{- with .Values.watchNamespaces }}
DISYNC_NAMESPACES: {{ toJson . | quote }}
{{- end }}
{{- end -}}
