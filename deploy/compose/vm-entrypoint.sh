#!/bin/sh
# Entrypoint of the compose "VM" image (deploy/compose/Dockerfile): enrolls
# this machine into the mesh with `meshfed vm-agent join`, then hands PID 1
# to systemd, which starts meshfed-vm-agent.service and the sample app.
#
# The join token comes from MESHFED_JOIN_TOKEN or, better (not visible in
# `docker inspect`), from the file MESHFED_JOIN_TOKEN_FILE (default: the
# compose secret /run/secrets/meshfed_join_token). The credentials join
# writes to /etc/meshfed live on a volume: a restarted container is already
# enrolled and goes straight to systemd.
set -eu

config_dir=${MESHFED_CONFIG_DIR:-/etc/meshfed}
token_file=${MESHFED_JOIN_TOKEN_FILE:-/run/secrets/meshfed_join_token}

log() { echo "vm-entrypoint: $*" >&2; }

enroll() {
  if [ -n "${MESHFED_JOIN_TOKEN:-}" ]; then
    token=$MESHFED_JOIN_TOKEN
  elif [ -r "$token_file" ]; then
    token=$(cat "$token_file")
  else
    log "no join token: set MESHFED_JOIN_TOKEN or provide the file $token_file (docs/vm-compose.md)"
    exit 64
  fi
  if [ -z "${MESHFED_ZONE_CP:-}" ]; then
    log "MESHFED_ZONE_CP is not set: the zone control plane's URL, https://host:port"
    exit 64
  fi
  # The address the mesh reaches this VM at: the first one Docker gave it.
  address=${MESHFED_ADDRESS:-$(hostname -i | cut -d' ' -f1)}
  # (Positional parameters are local to the function: the container's own arguments are kept for systemd.)
  set -- vm-agent join --zone-cp "$MESHFED_ZONE_CP" --token "$token" --address "$address" \
    --service-port "${MESHFED_SERVICE_PORT:-8080}" --no-systemd --config-dir "$config_dir"
  if [ -n "${MESHFED_CA_FINGERPRINT:-}" ]; then set -- "$@" --ca-fingerprint "$MESHFED_CA_FINGERPRINT"; fi
  if [ -n "${MESHFED_LABELS:-}" ]; then set -- "$@" --labels "$MESHFED_LABELS"; fi
  # The zone CP may still be starting (kind clusters can come up after compose): retry for a while.
  attempts=${MESHFED_JOIN_ATTEMPTS:-60}
  retry_seconds=${MESHFED_JOIN_RETRY_SECONDS:-5}
  n=1
  until meshfed "$@"; do
    if [ "$n" -ge "$attempts" ]; then
      log "join failed $n times; giving up"
      exit 69
    fi
    log "join failed (attempt $n of $attempts); retrying in ${retry_seconds}s"
    n=$((n + 1))
    sleep "$retry_seconds"
  done
  # The unit runs as `meshfed` (deploy/systemd/meshfed-vm-agent.service).
  chown -R meshfed:meshfed "$config_dir"
  chmod 0700 "$config_dir"
  log "enrolled into the mesh through $MESHFED_ZONE_CP"
}

if [ -n "$(ls -A "$config_dir" 2>/dev/null)" ]; then
  log "$config_dir holds credentials: already enrolled"
else
  enroll
fi

# systemd must be PID 1; it starts the units enabled in the image.
exec "${MESHFED_INIT:-/lib/systemd/systemd}" "$@"
