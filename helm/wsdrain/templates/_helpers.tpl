{{/* Names and labels. */}}
{{- define "wsdrain.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "wsdrain.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wsdrain.labels" -}}
{{ include "wsdrain.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* A wsdrain duration ("25s", "1.5m", "500ms", "1h", "0") in whole seconds, rounded up. */}}
{{- define "wsdrain.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}{{ ceil (divf (float64 (trimSuffix "ms" $d)) 1000) }}
{{- else if hasSuffix "s" $d -}}{{ ceil (float64 (trimSuffix "s" $d)) }}
{{- else if hasSuffix "m" $d -}}{{ ceil (mulf (float64 (trimSuffix "m" $d)) 60) }}
{{- else if hasSuffix "h" $d -}}{{ ceil (mulf (float64 (trimSuffix "h" $d)) 3600) }}
{{- else -}}{{ ceil (float64 $d) }}{{- end -}}
{{- end -}}

{{/* The admin port, from config.admin.listen. */}}
{{- define "wsdrain.adminPort" -}}
{{- regexReplaceAll "^.*:" .Values.config.admin.listen "" -}}
{{- end -}}

{{- define "wsdrain.listenPort" -}}
{{- regexReplaceAll "^.*:" .Values.config.listen "" -}}
{{- end -}}

{{/* The wsdrain container; a classic sidecar or (sidecarMode native) an init container. */}}
{{- define "wsdrain.container" -}}
- name: wsdrain
  image: {{ .Values.wsdrain.image }}
  imagePullPolicy: {{ .Values.wsdrain.imagePullPolicy }}
  {{- if eq .Values.wsdrain.sidecarMode "native" }}
  restartPolicy: Always
  {{- end }}
  args: ["--config", "/etc/wsdrain/wsdrain.yaml"]
  ports:
    - {name: ws, containerPort: {{ include "wsdrain.listenPort" . }}}
    - {name: admin, containerPort: {{ include "wsdrain.adminPort" . }}}
  readinessProbe:
    httpGet: {path: /readyz, port: admin}
    periodSeconds: 2
    failureThreshold: 1
  livenessProbe:
    httpGet: {path: /healthz, port: admin}
    periodSeconds: 10
  {{- if eq .Values.wsdrain.sidecarMode "native" }}
  startupProbe:
    httpGet: {path: /readyz, port: admin}
    periodSeconds: 1
    failureThreshold: 30
  {{- end }}
  lifecycle:
    preStop:
      # Drain first: readiness off, then every session closed with a proper handshake.
      exec:
        command: ["wsdrain", "drain", "--wait", "--timeout", "{{ include "wsdrain.seconds" .Values.config.drain.timeout }}s",
                  "--admin", "127.0.0.1:{{ include "wsdrain.adminPort" . }}"]
  volumeMounts:
    - {name: config, mountPath: /etc/wsdrain, readOnly: true}
    {{- if .Values.wsdrain.tlsSecret }}
    - {name: tls, mountPath: /etc/wsdrain/tls, readOnly: true}
    {{- end }}
  securityContext: {{- toYaml .Values.securityContext | nindent 4 }}
  resources: {{- toYaml .Values.wsdrain.resources | nindent 4 }}
{{- end -}}
