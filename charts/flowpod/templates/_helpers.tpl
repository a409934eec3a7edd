{{/*
Shared names, labels and computed values for every template in this chart.
*/}}

{{/* The chart name, unless overridden. */}}
{{- define "flowpod.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every namespaced and cluster-scoped name. Cluster-scoped objects (ClusterRole)
carry it too, so two releases in different namespaces never collide.
*/}}
{{- define "flowpod.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's Deployment, ServiceAccount and RBAC objects share this name. */}}
{{- define "flowpod.operatorName" -}}
{{- printf "%s-operator" (include "flowpod.fullname" .) -}}
{{- end -}}

{{/* The flow-run pods' Role and RoleBinding (the ServiceAccount has a fixed name). */}}
{{- define "flowpod.flowRunRoleName" -}}
{{- printf "%s-flow-run" (include "flowpod.fullname" .) -}}
{{- end -}}

{{/* The flow-run identity policy and its binding (cluster-scoped, so per release). */}}
{{- define "flowpod.flowRunIdentityName" -}}
{{- printf "%s-flow-run-identity" (include "flowpod.fullname" .) -}}
{{- end -}}

{{- define "flowpod.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries; `helm uninstall` checks and users' selectors rely on them. */}}
{{- define "flowpod.labels" -}}
helm.sh/chart: {{ include "flowpod.chart" . }}
{{ include "flowpod.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flowpod
{{- end -}}

{{/* Selector labels are immutable on a Deployment, so they hold no version. */}}
{{- define "flowpod.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowpod.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flowpod.operatorImage" -}}
{{- $img := .Values.image.operator -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}

{{- define "flowpod.engineImage" -}}
{{- $img := .Values.image.engine -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/*
Namespaces whose FlowRuns the operator reconciles, for RBAC: the watched list, or nothing
when watching everything (the ClusterRole covers that).
*/}}
{{- define "flowpod.watchAll" -}}
{{- if eq (len .Values.watchNamespaces) 0 -}}true{{- end -}}
{{- end -}}

{{/*
Namespaces that get the flow-run ServiceAccount and Role: the release namespace, the watched
namespaces and any extra ones, without duplicates. Rendered as a JSON list for fromJsonArray.
*/}}
{{- define "flowpod.flowRunNamespaces" -}}
{{- $all := list .Release.Namespace -}}
{{- $all = concat $all .Values.watchNamespaces .Values.flowRuns.namespaces -}}
{{- $all | uniq | toJson -}}
{{- end -}}

{{/*
The operator's permissions, shared by its ClusterRole and its per-namespace Roles: exactly
flowpod_operator._runtime.kubeapi.RBAC_RULES, verb for verb (tests/delivery/test_helm_chart.py checks).
*/}}
{{- define "flowpod.operatorRules" -}}
# Watch runs; re-read one after a 409 conflict; label a run with its Deployment's name.
# Start a Deployment's scheduled runs; cancel one a newer one replaces (concurrencyPolicy);
# delete finished runs past their ttlSecondsAfterFinished or their Deployment's history limits.
- apiGroups: ["flowpod.io"]
  resources: ["flowruns"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
# Every state write is a merge patch of the status subresource.
- apiGroups: ["flowpod.io"]
  resources: ["flowruns/status"]
  verbs: ["patch"]
# Jobs carry an ownerReference with blockOwnerDeletion to their FlowRun; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin require this to set it.
- apiGroups: ["flowpod.io"]
  resources: ["flowruns/finalizers"]
  verbs: ["update"]
# Deployments (flowpod's, not apps/v1) resolve a run's entrypoint, image and defaults.
- apiGroups: ["flowpod.io"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
# A Deployment's status: Ready, its next and last schedule times, its active runs.
- apiGroups: ["flowpod.io"]
  resources: ["deployments/status"]
  verbs: ["patch"]
# One Job per attempt (read back when it already exists); a cancelled run's Job is deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Pods are followed to map exits, OOM, evictions and image errors; cancelling deletes them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "delete"]
# A run the operator ends Crashed or Cancelled keeps its pod's last log lines in its status.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# An Event on the FlowRun for every transition; a Job's Events say why it makes no pod.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end -}}
