{{/* Names: every object is <release>-<component>, 52 characters at most (StatefulSet pods add
a revision hash label of 63). */}}
{{- define "autoglm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "autoglm.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "autoglm.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A model's name as a Kubernetes name part: lowercase letters, digits and dashes. */}}
{{- define "autoglm.modelSlug" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trunc 30 | trimAll "-" -}}
{{- end -}}

{{/* A model's topic part, as mcp/names.py writes it. */}}
{{- define "autoglm.topicPart" -}}
{{- regexReplaceAll "[^A-Za-z0-9._-]" . "_" -}}
{{- end -}}

{{- define "autoglm.image" -}}
{{- $registry := required "image.registry is required: the registry you pushed the autoglm-mcp images to" .root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .repository (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "autoglm.kafkaBootstrap" -}}
{{- if .Values.kafka.internal.enabled -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is set: turn kafka.internal.enabled off to use your own brokers" -}}
{{- end -}}
{{- printf "%s-kafka-0.%s-kafka.%s.svc.%s:9092" (include "autoglm.fullname" .) (include "autoglm.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- required "kafka.bootstrapServers is required when kafka.internal.enabled is false" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "autoglm.secretName" -}}
{{- default (printf "%s-secrets" (include "autoglm.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Environment shared by every platform container. */}}
{{- define "autoglm.env" -}}
- name: AUTOGLM_CONFIG
  value: /etc/autoglm/config.yaml
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: AUTOGLM_INSTANCE_ID
  value: $(POD_NAME)
- name: HOME
  value: /tmp
{{- end -}}

{{- define "autoglm.envFrom" -}}
- secretRef: {name: {{ include "autoglm.secretName" . }}}
{{- end -}}

{{/* Volumes of every platform pod: config, writable /tmp and /cache, blobs. */}}
{{- define "autoglm.volumes" -}}
- name: config
  configMap: {name: {{ include "autoglm.fullname" . }}-config}
- name: tmp
  emptyDir: {}
- name: cache
  emptyDir: {}
{{- if eq .Values.blobs.backend "filesystem" }}
- name: blobs
  persistentVolumeClaim: {claimName: {{ default (printf "%s-blobs" (include "autoglm.fullname" .)) .Values.blobs.persistence.existingClaim }}}
{{- end }}
{{- end -}}

{{- define "autoglm.volumeMounts" -}}
- {name: config, mountPath: /etc/autoglm, readOnly: true}
- {name: tmp, mountPath: /tmp}
- {name: cache, mountPath: /cache}
{{- if eq .Values.blobs.backend "filesystem" }}
- {name: blobs, mountPath: /blobs}
{{- end }}
{{- end -}}
