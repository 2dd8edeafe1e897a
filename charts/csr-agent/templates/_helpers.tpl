{{/*
The namespace of the controller, its CA Secret and Lease, and the
injector's parameters.
*/}}
{{- define "csr-agent.namespace" -}}
{{- required "namespace.name is required" .Values.namespace.name -}}
{{- end }}

{{/*
Labels of every object: the component's name (also the selector of the
controller's pods), then Helm's standard labels. Call with
(list $ "csr-agent-controller").
*/}}
{{- define "csr-agent.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
{{ include "csr-agent.partOfLabels" $root }}
{{- end }}

{{/*
csr-agent's own label and Helm's standard labels (the only labels a
rendered object has beyond those of manifests/).
*/}}
{{- define "csr-agent.partOfLabels" -}}
app.kubernetes.io/part-of: csr-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The image both programs run. */}}
{{- define "csr-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}

{{/*
The signer name. values.schema.json holds it to <domain>/<path> in the
characters the API allows, so it is safe inside the policies' CEL string
literals; the controller checks the rest at start.
*/}}
{{- define "csr-agent.signerName" -}}
{{- required "signerName is required" .Values.signerName -}}
{{- end }}

{{/*
The signer an agent asks for when SIGNER_NAME is unset (a test holds it to
the agent's default).
*/}}
{{- define "csr-agent.agentDefaultSignerName" -}}
csr-agent.io/pod
{{- end }}

{{/*
The signer's domain wildcard, as kube-apiserver's approval check also
accepts it: csr-agent.io/pod -> csr-agent.io/*.
*/}}
{{- define "csr-agent.signerWildcard" -}}
{{- printf "%s/*" (include "csr-agent.signerName" . | splitList "/" | first) -}}
{{- end }}

{{/*
The ClusterTrustBundle the controller publishes its CA in: its default
TRUST_BUNDLE_NAME, <signer name with / as :>:ca (config.DefaultTrustBundleName;
a test holds the two equal).
*/}}
{{- define "csr-agent.trustBundleName" -}}
{{- printf "%s:ca" (include "csr-agent.signerName" . | replace "/" ":") -}}
{{- end }}

{{/* The controller's service account, as a subject of bindings. */}}
{{- define "csr-agent.controllerSubject" -}}
- kind: ServiceAccount
  name: csr-agent-controller
  namespace: {{ include "csr-agent.namespace" . }}
{{- end }}
