{{/* Release-scoped name prefix, at most 63 characters (DNS label). */}}
{{- define "adstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; pass (dict "root" $ "component" "name"). */}}
{{- define "adstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "adstream.selectorLabels" . }}
{{- end -}}

{{/* Labels that select one component's pods. */}}
{{- define "adstream.selectorLabels" -}}
app.kubernetes.io/name: adstream
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "adstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The registry URL the components use: the given one, else the chart's own registry Service. */}}
{{- define "adstream.registryUrl" -}}
{{- if .Values.registry.url -}}
{{- .Values.registry.url -}}
{{- else -}}
{{- printf "http://%s-registry:%d" (include "adstream.fullname" .) (int .Values.schemaRegistry.port) -}}
{{- end -}}
{{- end -}}

{{/* librdkafka properties of every Kafka client: the given ones plus those SASL and TLS imply. */}}
{{- define "adstream.kafkaProperties" -}}
{{- $kafka := deepCopy .Values.kafka.properties }}
{{- $sasl := .Values.kafka.sasl.enabled }}
{{- $tls := .Values.kafka.tls.enabled }}
{{- if and $sasl $tls }}
{{- $_ := set $kafka "security.protocol" "SASL_SSL" }}
{{- else if $sasl }}
{{- $_ := set $kafka "security.protocol" "SASL_PLAINTEXT" }}
{{- else if $tls }}
{{- $_ := set $kafka "security.protocol" "SSL" }}
{{- end }}
{{- if $sasl }}
{{- $_ := set $kafka "sasl.mechanism" .Values.kafka.sasl.mechanism }}
{{- end }}
{{- if and $tls .Values.kafka.tls.caSecret }}
{{- $_ := set $kafka "ssl.ca.location" "/etc/adstream/kafka-ca/ca.crt" }}
{{- end }}
{{- toYaml $kafka }}
{{- end -}}

{{/*
Environment of every adstream container. All settings travel as environment variables rather than a config map, so
that the pre-install hook (which runs before any of the release's objects exist) is configured the same way: Kafka
properties as ADSTREAM_KAFKA_* (`sasl.mechanism` is ADSTREAM_KAFKA_SASL_MECHANISM), the secrets among them and the
registry's credentials (Confluent's basic.auth.user.info / bearer.auth.token) straight from Secrets, never from a
config map or the command line.
*/}}
{{- define "adstream.env" -}}
- name: ADSTREAM_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: ADSTREAM_REGISTRY_URL
  value: {{ include "adstream.registryUrl" . | quote }}
{{- range $key, $value := (include "adstream.kafkaProperties" . | fromYaml) }}
- name: {{ printf "ADSTREAM_KAFKA_%s" ($key | replace "." "_" | upper) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- if .Values.topology.existingConfigMap }}
- name: ADSTREAM_TOPOLOGY
  value: /etc/adstream/topology/adstream.yaml
{{- end }}
{{- with .Values.kafka.sasl }}
{{- if .enabled }}
- name: ADSTREAM_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: ADSTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- if .Values.registry.caSecret }}
- name: ADSTREAM_REGISTRY_SSL_CA_LOCATION
  value: /etc/adstream/registry-ca/ca.crt
{{- end }}
{{- with .Values.registry.credentials }}
{{- if .existingSecret }}
{{- if .basicAuthUserInfoKey }}
- name: ADSTREAM_REGISTRY_BASIC_AUTH_USER_INFO
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .basicAuthUserInfoKey }}
{{- end }}
{{- if .bearerTokenKey }}
- name: ADSTREAM_REGISTRY_BEARER_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .bearerTokenKey }}
{{- end }}
{{- end }}
{{- end }}
- name: ADSTREAM_LOG
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Volumes every adstream pod mounts: CA bundles, the topology, a writable /tmp (the root fs is read-only). */}}
{{- define "adstream.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.topology.existingConfigMap }}
- name: topology
  configMap:
    name: {{ .Values.topology.existingConfigMap }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- if .Values.registry.caSecret }}
- name: registry-ca
  secret:
    secretName: {{ .Values.registry.caSecret }}
    items:
      - key: {{ .Values.registry.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "adstream.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.topology.existingConfigMap }}
- name: topology
  mountPath: /etc/adstream/topology
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/adstream/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.registry.caSecret }}
- name: registry-ca
  mountPath: /etc/adstream/registry-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every component; pass (dict "root" $ "component" name "values" componentValues). */}}
{{- define "adstream.podSpecCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .values.topologySpread.maxSkew }}
    topologyKey: {{ .values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ .values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "adstream.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{- define "adstream.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* A PodDisruptionBudget for one component; pass (dict "root" $ "component" name "name" objectName "pdb" pdbValues). */}}
{{- define "adstream.pdb" -}}
{{- if .pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "adstream.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "adstream.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
