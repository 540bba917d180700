#!/usr/bin/env bash
# meshfed certificate bootstrap, run as a Kubernetes Job from the meshfed image.
#
# Makes a serving certificate for in-cluster HTTPS endpoints that the API
# server or kubectl must trust (the injection webhook, the control planes'
# REST APIs): a self-signed ECDSA P-256 CA and a leaf for the Service DNS
# names, stored in a `kubernetes.io/tls` Secret (tls.crt, tls.key, ca.crt).
# With WEBHOOK_CONFIGURATION set, it also writes the CA into every webhook's
# clientConfig.caBundle of that MutatingWebhookConfiguration.
#
# Idempotent: an existing Secret whose certificate still covers every DNS
# name for more than RENEW_BEFORE_DAYS is kept (only the caBundle is
# re-patched), so re-running the Job never rotates a certificate that pods
# already serve. Delete the Secret and re-run the Job to rotate.
#
# It talks to the API server with curl and the Job's ServiceAccount token,
# because the image carries no kubectl. Everything it needs comes from the
# environment:
#   SECRET_NAME            Secret to create (required)
#   DNS_NAMES              comma-separated DNS names of the leaf (required)
#   WEBHOOK_CONFIGURATION  MutatingWebhookConfiguration to patch (optional)
#   NAMESPACE              default: the ServiceAccount's namespace
#   CERT_DAYS              leaf and CA lifetime, default 3650
#   RENEW_BEFORE_DAYS      default 30
#   KUBE_API               default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
#   KUBE_TOKEN_FILE        default /var/run/secrets/kubernetes.io/serviceaccount/token
#   KUBE_CA_FILE           default /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
set -euo pipefail

SA_DIR=/var/run/secrets/kubernetes.io/serviceaccount

log() {
  # One JSON line per event, like the rest of meshfed's logs.
  printf '{"level":"%s","component":"cert-bootstrap","msg":"%s"}\n' "$1" "$2" >&2
}

fail() {
  log error "$1"
  exit 1
}

for tool in curl openssl jq base64; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed in this image"
done

: "${SECRET_NAME:?SECRET_NAME is required (the Secret to create)}"
: "${DNS_NAMES:?DNS_NAMES is required (comma-separated names of the certificate)}"
WEBHOOK_CONFIGURATION="${WEBHOOK_CONFIGURATION:-}"
CERT_DAYS="${CERT_DAYS:-3650}"
RENEW_BEFORE_DAYS="${RENEW_BEFORE_DAYS:-30}"
KUBE_TOKEN_FILE="${KUBE_TOKEN_FILE:-$SA_DIR/token}"
KUBE_CA_FILE="${KUBE_CA_FILE:-$SA_DIR/ca.crt}"
if [[ -z "${KUBE_API:-}" ]]; then
  [[ -n "${KUBERNETES_SERVICE_HOST:-}" ]] || fail "KUBE_API is unset and this is not a pod (no KUBERNETES_SERVICE_HOST)"
  KUBE_API="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT:-443}"
fi
if [[ -z "${NAMESPACE:-}" ]]; then
  [[ -r "$SA_DIR/namespace" ]] || fail "NAMESPACE is unset and $SA_DIR/namespace is not readable"
  NAMESPACE="$(cat "$SA_DIR/namespace")"
fi
[[ "$CERT_DAYS" =~ ^[0-9]+$ && "$CERT_DAYS" -gt 0 ]] || fail "CERT_DAYS must be a positive number of days"
[[ "$RENEW_BEFORE_DAYS" =~ ^[0-9]+$ ]] || fail "RENEW_BEFORE_DAYS must be a number of days"
[[ -r "$KUBE_TOKEN_FILE" ]] || fail "cannot read the API token $KUBE_TOKEN_FILE"
[[ -r "$KUBE_CA_FILE" ]] || fail "cannot read the API server CA $KUBE_CA_FILE"

IFS=',' read -r -a names <<<"$DNS_NAMES"
[[ ${#names[@]} -gt 0 && -n "${names[0]}" ]] || fail "DNS_NAMES holds no name"
for name in "${names[@]}"; do
  [[ "$name" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || fail "DNS_NAMES: \"$name\" is not a DNS name"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# api METHOD PATH [BODY [CONTENT-TYPE]]: prints the body, returns 0 on 2xx;
# the HTTP status is left in $work/status.
api() {
  local method="$1" path="$2" body="${3:-}" type="${4:-application/json}"
  local args=(--silent --show-error --max-time 30 --cacert "$KUBE_CA_FILE"
    -H "Authorization: Bearer $(cat "$KUBE_TOKEN_FILE")" -H "Accept: application/json"
    -X "$method" -o "$work/body" -w '%{http_code}')
  if [[ -n "$body" ]]; then
    args+=(-H "Content-Type: $type" --data-binary "@$body")
  fi
  curl "${args[@]}" "$KUBE_API$path" >"$work/status" || fail "cannot reach the API server at $KUBE_API"
  cat "$work/body"
  [[ "$(cat "$work/status")" =~ ^2 ]]
}

secret_path="/api/v1/namespaces/$NAMESPACE/secrets/$SECRET_NAME"

# covers FILE: the certificate is valid for RENEW_BEFORE_DAYS more and names every DNS name.
covers() {
  local cert="$1"
  openssl x509 -in "$cert" -noout -checkend $((RENEW_BEFORE_DAYS * 86400)) >/dev/null 2>&1 || return 1
  local sans
  sans="$(openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null)" || return 1
  for name in "${names[@]}"; do
    grep -qE "DNS:${name//./\\.}(,|$)" <<<"$sans" || return 1
  done
}

reuse=false
if api GET "$secret_path" >"$work/secret.json"; then
  if jq -er '.data["tls.crt"]' "$work/secret.json" | base64 -d >"$work/existing.crt" 2>/dev/null &&
    jq -er '.data["ca.crt"]' "$work/secret.json" | base64 -d >"$work/ca.crt" 2>/dev/null &&
    covers "$work/existing.crt"; then
    reuse=true
    log info "secret $NAMESPACE/$SECRET_NAME holds a valid certificate for $DNS_NAMES; keeping it"
  fi
elif [[ "$(cat "$work/status")" != 404 ]]; then
  fail "reading secret $NAMESPACE/$SECRET_NAME: HTTP $(cat "$work/status"): $(jq -r '.message // empty' "$work/body" 2>/dev/null)"
fi

if [[ "$reuse" == false ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$CERT_DAYS" \
    -subj "/O=meshfed/CN=meshfed bootstrap CA ($SECRET_NAME)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$work/ca.crt" 2>/dev/null || fail "openssl could not make the CA"
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/tls.ec.key" 2>/dev/null
  # PKCS#8 so that every TLS stack (Node, Go) reads it.
  openssl pkcs8 -topk8 -nocrypt -in "$work/tls.ec.key" -out "$work/tls.key"
  san="$(printf 'DNS:%s,' "${names[@]}")"
  san="${san%,}"
  openssl req -new -key "$work/tls.key" -subj "/O=meshfed/CN=${names[0]}" -out "$work/tls.csr" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=$san" >"$work/leaf.ext"
  openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days "$CERT_DAYS" -sha256 -extfile "$work/leaf.ext" -out "$work/tls.crt" 2>/dev/null ||
    fail "openssl could not sign the serving certificate"

  b64() { base64 -w0 <"$1"; }
  jq -n --arg name "$SECRET_NAME" --arg ns "$NAMESPACE" \
    --arg crt "$(b64 "$work/tls.crt")" --arg key "$(b64 "$work/tls.key")" --arg ca "$(b64 "$work/ca.crt")" \
    '{apiVersion: "v1", kind: "Secret", type: "kubernetes.io/tls",
      metadata: {name: $name, namespace: $ns,
        labels: {"app.kubernetes.io/part-of": "meshfed", "app.kubernetes.io/managed-by": "meshfed-cert-bootstrap"}},
      data: {"tls.crt": $crt, "tls.key": $key, "ca.crt": $ca}}' >"$work/new-secret.json"
  if [[ "$(cat "$work/status")" == 404 ]]; then
    api POST "/api/v1/namespaces/$NAMESPACE/secrets" "$work/new-secret.json" >/dev/null ||
      fail "creating secret $NAMESPACE/$SECRET_NAME: HTTP $(cat "$work/status"): $(jq -r '.message // empty' "$work/body" 2>/dev/null)"
    log info "created secret $NAMESPACE/$SECRET_NAME for $DNS_NAMES"
  else
    # Replace under the version read, so two Jobs racing cannot both win.
    jq --arg rv "$(jq -r '.metadata.resourceVersion' "$work/secret.json")" '.metadata.resourceVersion = $rv' \
      "$work/new-secret.json" >"$work/replace.json"
    api PUT "$secret_path" "$work/replace.json" >/dev/null ||
      fail "replacing secret $NAMESPACE/$SECRET_NAME: HTTP $(cat "$work/status"): $(jq -r '.message // empty' "$work/body" 2>/dev/null)"
    log info "replaced the expiring or incomplete certificate in secret $NAMESPACE/$SECRET_NAME"
  fi
fi

if [[ -n "$WEBHOOK_CONFIGURATION" ]]; then
  hook_path="/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/$WEBHOOK_CONFIGURATION"
  api GET "$hook_path" >"$work/hook.json" ||
    fail "reading MutatingWebhookConfiguration $WEBHOOK_CONFIGURATION: HTTP $(cat "$work/status"): $(jq -r '.message // empty' "$work/body" 2>/dev/null)"
  count="$(jq '.webhooks | length' "$work/hook.json")"
  [[ "$count" -gt 0 ]] || fail "MutatingWebhookConfiguration $WEBHOOK_CONFIGURATION has no webhooks"
  # A JSON patch with a resourceVersion test: a concurrent edit fails the patch instead of being lost.
  jq --arg ca "$(base64 -w0 <"$work/ca.crt")" \
    '[{op: "test", path: "/metadata/resourceVersion", value: .metadata.resourceVersion}] +
     [range(0; .webhooks | length) | {op: "add", path: "/webhooks/\(.)/clientConfig/caBundle", value: $ca}]' \
    "$work/hook.json" >"$work/patch.json"
  api PATCH "$hook_path" "$work/patch.json" application/json-patch+json >/dev/null ||
    fail "patching the caBundle of $WEBHOOK_CONFIGURATION: HTTP $(cat "$work/status"): $(jq -r '.message // empty' "$work/body" 2>/dev/null)"
  log info "wrote the CA into the caBundle of $count webhook(s) of $WEBHOOK_CONFIGURATION"
fi
