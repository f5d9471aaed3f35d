{{/* Names, labels and the derived settings every template shares. */}}

{{- define "trainsmart.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trainsmart.fullname" -}}
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

{{- define "trainsmart.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trainsmart.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "trainsmart.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "trainsmart.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trainsmart
{{- end }}

{{- define "trainsmart.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trainsmart.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trainsmart.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces the operator watches, as a list: empty in cluster mode. */}}
{{- define "trainsmart.watchedNamespaces" -}}
{{- if eq .Values.watch.mode "namespaces" }}
{{- $namespaces := .Values.watch.namespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{- define "trainsmart.peeringName" -}}
{{- default (include "trainsmart.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "trainsmart.webhookConfigurationName" -}}
{{- default "trainsmart.dev" .Values.webhook.configurationName }}
{{- end }}

{{- define "trainsmart.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "trainsmart.fullname" .)) .Values.webhook.certificate.secretName }}
{{- end }}

{{- define "trainsmart.reportURL" -}}
{{- $scheme := ternary "https" "http" .Values.operator.report.tls.enabled }}
{{- default (printf "%s://%s:%d/v1/reports" $scheme (include "trainsmart.reportHost" .) (int .Values.operator.report.port)) .Values.operator.report.url }}
{{- end }}

{{/* The report Service's DNS name: what pods call and what the report certificate covers. */}}
{{- define "trainsmart.reportHost" -}}
{{- printf "%s-report.%s.svc" (include "trainsmart.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "trainsmart.reportSecretName" -}}
{{- default (printf "%s-report-tls" (include "trainsmart.fullname" .)) .Values.operator.report.tls.secretName }}
{{- end }}

{{/* Refuse combinations that would deploy a broken operator. */}}
{{- define "trainsmart.validate" -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate.source "operator") (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount > 1 with webhook.certificate.source=operator: every replica would issue its own CA and fight over the webhook configuration. Use certManager or secret, or disable the webhook." }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate.source "secret") (not .Values.webhook.certificate.secretName) }}
{{- fail "webhook.certificate.source=secret needs webhook.certificate.secretName (a kubernetes.io/tls Secret with ca.crt)" }}
{{- end }}
{{- $url := .Values.operator.report.url }}
{{- if and $url .Values.operator.report.tls.enabled (not (hasPrefix "https://" $url)) }}
{{- fail "operator.report.url must be https:// while operator.report.tls.enabled is true (the operator serves what the URL says)" }}
{{- end }}
{{- if and $url (not .Values.operator.report.tls.enabled) (not (hasPrefix "http://" $url)) }}
{{- fail "operator.report.url must be http:// when operator.report.tls.enabled is false" }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate.source "secret") (not .Values.webhook.certificate.caBundle) }}
{{- fail "webhook.certificate.source=secret needs webhook.certificate.caBundle (base64 PEM of the CA)" }}
{{- end }}
{{- end }}

{{/* What the controllers do in a watched namespace: exactly the calls they make (docs/helm.md). */}}
{{- define "trainsmart.jobRules" -}}
# TrainingJobs: watched and read; deleted when their TTL ends; created, suspended/resumed (a patch of
# spec.suspend) and deleted as a sweep's trials.
- apiGroups: [trainsmart.dev]
  resources: [trainingjobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [trainsmart.dev]
  resources: [hyperparamsweeps]
  verbs: [get, list, watch]
# Status is written through the status subresource only.
- apiGroups: [trainsmart.dev]
  resources: [trainingjobs/status, hyperparamsweeps/status]
  verbs: [patch]
# Replica pods: listed and watched, created, deleted on restart, suspend and completion.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, delete]
# Each job's report-token Secret: created if absent, read by name to check a report's token. Never
# listed or watched, never updated or deleted (it goes with its job, by owner reference). Also read by
# name: the MLflow credentialsSecret a job or sweep names in spec.tracking (get only, never listed).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
# Each job's headless Service and checkpoint claim: created if absent.
- apiGroups: [""]
  resources: [services, persistentvolumeclaims]
  verbs: [create]
# The metrics wrapper's ConfigMap of a job with spec.trainer.metrics: created if absent (immutable, it
# goes with its job by owner reference, so never read, updated or deleted).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
# Owner references: every child (pods, Secrets, Services, claims, ConfigMaps) points at its TrainingJob
# and every trial at its sweep with blockOwnerDeletion. Under the OwnerReferencesPermissionEnforcement
# admission plugin (OpenShift enables it) setting that needs update on the owner's finalizers
# subresource; the operator never writes finalizers otherwise.
- apiGroups: [trainsmart.dev]
  resources: [trainingjobs/finalizers, hyperparamsweeps/finalizers]
  verbs: [update]
# Events on jobs and sweeps (ours and Kopf's): posted, never updated.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
