#!/usr/bin/env bash
# Two kind clusters with a multi-cluster meshfed:
#   meshfed-a: the global control plane (2 replicas + Redis) and zone-a
#   meshfed-b: zone-b, syncing from global over the kind Docker network
# and a namespace "demo" labelled for sidecar injection in both.
#
# Usage: deploy/kind/up.sh        (re-running it is safe: it converges)
# Environment:
#   MESHFED_IMAGE        image to build and load (default meshfed:<package version>)
#   MESHFED_SKIP_BUILD=1 use an image that is already built
#   KIND_NODE_IMAGE      kind node image (default: kind's)
#   MESHFED_TIMEOUT      how long to wait for each rollout (default 300s)
# docs/kubernetes-deploy.md walks through what it does.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DEPLOY="$ROOT/deploy"
CLUSTER_A=meshfed-a
CLUSTER_B=meshfed-b
CTX_A="kind-$CLUSTER_A"
CTX_B="kind-$CLUSTER_B"
NS=meshfed-system
DEMO_NS=demo
TIMEOUT="${MESHFED_TIMEOUT:-300s}"
# Must match the nodePorts in deploy/global/global-cp.yaml and deploy/zone/gateway.yaml.
KDS_NODE_PORT=30685
GATEWAY_NODE_PORT=30443

say() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'up.sh: %s\n' "$*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed: $2"
}

need docker "install Docker Engine or Docker Desktop (https://docs.docker.com/get-docker/)"
need kind "install kind v0.20 or newer (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
need curl "install curl with your package manager"
need node "install Node.js 20 (it runs the meshfed CLI and reads JSON answers)"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer: start Docker and retry"

VERSION="$(node -p "require(process.argv[1]).version" "$ROOT/package.json")"
IMAGE="${MESHFED_IMAGE:-meshfed:$VERSION}"
if [[ "$IMAGE" != "meshfed:$VERSION" ]]; then
  die "the manifests in deploy/ name the image meshfed:$VERSION; MESHFED_IMAGE=$IMAGE would not be used"
fi

WORK="$(mktemp -d)"
PF_PIDS=()
cleanup() {
  for pid in "${PF_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# json FILE EXPR: print a field of a JSON document (node, not jq: one fewer prerequisite).
json() {
  node -e '
    const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const value = process.argv[2].split(".").reduce((o, k) => (o == null ? o : o[k]), doc);
    if (value === undefined || value === null) process.exit(1);
    process.stdout.write(Array.isArray(value) ? value.join("") : String(value));
  ' "$1" "$2"
}

# port_forward CONTEXT TARGET PORT: forward a free local port to TARGET:PORT in $NS; sets PF_PORT.
PF_PORT=""
port_forward() {
  local log="$WORK/port-forward-${#PF_PIDS[@]}.log"
  kubectl --context "$1" -n "$NS" port-forward "$2" ":$3" >"$log" 2>&1 &
  local pid=$!
  PF_PIDS+=("$pid")
  for _ in $(seq 1 150); do
    PF_PORT="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$log" | head -n 1)"
    [[ -n "$PF_PORT" ]] && return 0
    kill -0 "$pid" 2>/dev/null || die "kubectl port-forward $2 failed: $(cat "$log")"
    sleep 0.2
  done
  die "kubectl port-forward $2 did not start within 30s: $(cat "$log")"
}

# meshfed ARGS...: the CLI from this checkout when built, else from the image.
meshfed() {
  if [[ -f "$ROOT/dist/cli/main.js" ]]; then
    node "$ROOT/dist/cli/main.js" "$@"
  else
    docker run --rm --network host --user "$(id -u):$(id -g)" -v "$WORK:$WORK:ro" "$IMAGE" "$@"
  fi
}

# apply_stdin CONTEXT: kubectl apply the manifest on stdin (create-or-update for generated objects).
apply_stdin() {
  kubectl --context "$1" apply -f - >/dev/null
}

node_ip() {
  docker inspect -f '{{ .NetworkSettings.Networks.kind.IPAddress }}' "$1-control-plane"
}

create_cluster() {
  local name="$1" config="$2"
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    say "kind cluster $name exists; reusing it"
  else
    say "creating kind cluster $name"
    local args=(create cluster --name "$name" --config "$config" --wait 120s)
    [[ -n "${KIND_NODE_IMAGE:-}" ]] && args+=(--image "$KIND_NODE_IMAGE")
    kind "${args[@]}"
  fi
  say "loading $IMAGE into $name"
  kind load docker-image "$IMAGE" --name "$name"
}

wait_job() {
  kubectl --context "$1" -n "$NS" wait --for=condition=complete "job/$2" --timeout="$TIMEOUT" ||
    die "job $2 in $1 did not complete; see: kubectl --context $1 -n $NS logs job/$2"
}

# A Job's pod template is immutable: delete the bootstrap Job so that apply re-creates it
# (its script keeps a certificate that is still valid, so a re-run rotates nothing).
reset_job() {
  kubectl --context "$1" -n "$NS" delete job "$2" --ignore-not-found >/dev/null
}

rollout() {
  kubectl --context "$1" -n "$NS" rollout status "$2" --timeout="$TIMEOUT" ||
    die "$2 in $1 is not ready; see: kubectl --context $1 -n $NS describe $2"
}

# ---------------------------------------------------------------- image
if [[ "${MESHFED_SKIP_BUILD:-}" == 1 ]]; then
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "MESHFED_SKIP_BUILD=1 but there is no image $IMAGE"
else
  say "building $IMAGE"
  docker build -t "$IMAGE" "$ROOT"
fi

# ---------------------------------------------------------------- clusters
create_cluster "$CLUSTER_A" "$HERE/cluster-a.yaml"
create_cluster "$CLUSTER_B" "$HERE/cluster-b.yaml"
A_IP="$(node_ip "$CLUSTER_A")"
B_IP="$(node_ip "$CLUSTER_B")"
[[ -n "$A_IP" && -n "$B_IP" ]] || die "cannot read the nodes' addresses on the kind network"

for ctx in "$CTX_A" "$CTX_B"; do
  say "installing the meshfed CRDs in $ctx"
  # Server-side: the CRDs' schemas are too large for the last-applied annotation.
  kubectl --context "$ctx" apply --server-side --force-conflicts -f "$DEPLOY/crds/" >/dev/null
  kubectl --context "$ctx" wait --for=condition=established --timeout=60s crd -l app.kubernetes.io/part-of=meshfed >/dev/null
done

# ---------------------------------------------------------------- global (cluster a)
say "installing the global control plane in $CTX_A"
reset_job "$CTX_A" meshfed-global-cert-bootstrap
kubectl --context "$CTX_A" apply -f "$DEPLOY/global/" >/dev/null
wait_job "$CTX_A" meshfed-global-cert-bootstrap
rollout "$CTX_A" statefulset/meshfed-redis
rollout "$CTX_A" deployment/meshfed-global-cp

kubectl --context "$CTX_A" -n "$NS" get secret meshfed-global-tls -o jsonpath='{.data.ca\.crt}' |
  base64 -d >"$WORK/global-api-ca.crt"
kubectl --context "$CTX_A" -n "$NS" exec deployment/meshfed-global-cp -c global-cp -- \
  cat /var/lib/meshfed/admin-token >"$WORK/admin-token"
chmod 600 "$WORK/admin-token"
port_forward "$CTX_A" service/meshfed-global-cp 5681
GLOBAL_API="https://localhost:$PF_PORT"
global_cli() { meshfed --server "$GLOBAL_API" --ca-file "$WORK/global-api-ca.crt" --token-file "$WORK/admin-token" "$@"; }

say "issuing zone tokens for zone-a and zone-b"
global_cli token create --kind zone --zone zone-a --name zone-a >"$WORK/zone-a-token"
global_cli token create --kind zone --zone zone-b --name zone-b >"$WORK/zone-b-token"
curl -fsS --cacert "$WORK/global-api-ca.crt" -H "Authorization: Bearer $(cat "$WORK/admin-token")" \
  "$GLOBAL_API/api/v1/trust-bundle" >"$WORK/trust-bundle.json" || die "cannot read global's trust bundle"
json "$WORK/trust-bundle.json" roots >"$WORK/root-cert.pem" || die "global's trust bundle has no roots"

# ---------------------------------------------------------------- zones
# install_zone CONTEXT ZONE KDS_ADDRESS GATEWAY_ADDRESS
install_zone() {
  local ctx="$1" zone="$2" kds="$3" gateway="$4"
  say "installing zone $zone in $ctx (global KDS $kds, gateway advertised as $gateway)"
  kubectl --context "$ctx" apply -f "$DEPLOY/zone/namespace.yaml" >/dev/null
  kubectl --context "$ctx" -n "$NS" create configmap meshfed-zone \
    --from-literal=zone="$zone" \
    --from-literal=global-kds-address="$kds" \
    --from-literal=gateway-address="$gateway" \
    --dry-run=client -o yaml | apply_stdin "$ctx"
  kubectl --context "$ctx" -n "$NS" create secret generic meshfed-zone-credentials \
    --from-file=zone-token="$WORK/$zone-token" \
    --from-file=global-ca.crt="$WORK/root-cert.pem" \
    --dry-run=client -o yaml | apply_stdin "$ctx"
  reset_job "$ctx" meshfed-zone-cert-bootstrap
  kubectl --context "$ctx" apply -f "$DEPLOY/zone/" >/dev/null
  wait_job "$ctx" meshfed-zone-cert-bootstrap
  rollout "$ctx" deployment/meshfed-zone-cp

  # The gateway's MDS token: a proxy token with role gateway, issued by the zone.
  kubectl --context "$ctx" -n "$NS" get secret meshfed-zone-tls -o jsonpath='{.data.ca\.crt}' |
    base64 -d >"$WORK/$zone-api-ca.crt"
  kubectl --context "$ctx" -n "$NS" exec deployment/meshfed-zone-cp -c zone-cp -- \
    cat /var/lib/meshfed/admin-token >"$WORK/$zone-admin-token"
  port_forward "$ctx" service/meshfed-zone-cp 5682
  curl -fsS --cacert "$WORK/$zone-api-ca.crt" \
    -H "Authorization: Bearer $(cat "$WORK/$zone-admin-token")" -H 'Content-Type: application/json' \
    -d '{"kind":"proxy","name":"eastwest-gateway","workload":"meshfed-eastwest-gateway","namespace":"meshfed-system","serviceAccount":"meshfed-eastwest-gateway","role":"gateway"}' \
    "https://localhost:$PF_PORT/api/v1/tokens" >"$WORK/$zone-gateway.json" ||
    die "zone $zone did not issue the gateway token"
  json "$WORK/$zone-gateway.json" token >"$WORK/$zone-gateway-token" || die "zone $zone answered without a token"
  kubectl --context "$ctx" -n "$NS" create secret generic meshfed-gateway-token \
    --from-file=token="$WORK/$zone-gateway-token" \
    --dry-run=client -o yaml | apply_stdin "$ctx"
  rollout "$ctx" deployment/meshfed-eastwest-gateway

  say "labelling namespace $DEMO_NS in $ctx for sidecar injection"
  kubectl --context "$ctx" create namespace "$DEMO_NS" --dry-run=client -o yaml | apply_stdin "$ctx"
  kubectl --context "$ctx" label namespace "$DEMO_NS" meshfed-injection=enabled --overwrite >/dev/null
  # The mesh root the injected sidecars pin (volume meshfed-identity, root-cert.pem).
  kubectl --context "$ctx" -n "$DEMO_NS" create configmap meshfed-ca-root-cert \
    --from-file=root-cert.pem="$WORK/root-cert.pem" \
    --dry-run=client -o yaml | apply_stdin "$ctx"
}

# zone-a reaches global inside its cluster; zone-b over the kind network at cluster a's NodePort.
install_zone "$CTX_A" zone-a "meshfed-global-kds.$NS.svc:5685" "$A_IP:$GATEWAY_NODE_PORT"
install_zone "$CTX_B" zone-b "$A_IP:$KDS_NODE_PORT" "$B_IP:$GATEWAY_NODE_PORT"

cat <<EOF

meshfed is up.
  global control plane: $CTX_A, namespace $NS (KDS for other clusters at $A_IP:$KDS_NODE_PORT)
  zone-a:               $CTX_A, gateway $A_IP:$GATEWAY_NODE_PORT
  zone-b:               $CTX_B, gateway $B_IP:$GATEWAY_NODE_PORT
  namespace "$DEMO_NS" is labelled meshfed-injection=enabled in both clusters.

Next:
  # the global API and its admin token
  kubectl --context $CTX_A -n $NS port-forward service/meshfed-global-cp 5681 &
  kubectl --context $CTX_A -n $NS get secret meshfed-global-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > global-ca.crt
  kubectl --context $CTX_A -n $NS exec deployment/meshfed-global-cp -- cat /var/lib/meshfed/admin-token > admin-token
  export MESHFED_SERVER=https://localhost:5681 MESHFED_CA_FILE=\$PWD/global-ca.crt MESHFED_TOKEN_FILE=\$PWD/admin-token
  meshfed get zones

  # deploy workloads into "$DEMO_NS" in either cluster: they get a sidecar
  kubectl --context $CTX_A -n $DEMO_NS create deployment web --image=nginx --port=80
  kubectl --context $CTX_A -n $DEMO_NS get pods -o jsonpath='{.items[*].spec.containers[*].name}'

  # tear down
  $HERE/down.sh
EOF
