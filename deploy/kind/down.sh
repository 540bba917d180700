#!/usr/bin/env bash
# Deletes the two kind clusters made by deploy/kind/up.sh (and everything in them).
set -euo pipefail

command -v kind >/dev/null 2>&1 ||
  { echo "down.sh: kind is required but not installed (https://kind.sigs.k8s.io/)" >&2; exit 1; }

for cluster in meshfed-a meshfed-b; do
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    echo "==> deleting kind cluster $cluster"
    kind delete cluster --name "$cluster"
  else
    echo "==> kind cluster $cluster does not exist"
  fi
done
