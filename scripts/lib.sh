# Shared by pinpipe's scripts: a project-local Python virtualenv and a moto server on loopback.
# shellcheck shell=bash

PINPIPE_VENV="${PINPIPE_VENV:-$root/.venv}"
export PINPIPE_VENV
# checkov has a virtualenv of its own (see scripts/requirements-checkov.txt), inside this one.
PINPIPE_CHECKOV_VENV="$PINPIPE_VENV/checkov"

# Creates a virtualenv and installs pinned requirements into it, again only when they changed.
install_venv() {
  local venv="$1" requirements="$2"
  local stamp="$venv/.pinpipe-requirements"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
    return
  fi
  echo "== installing $(basename "$requirements") into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
}

# The pinned Python tools (scripts/requirements.txt, and checkov), once.
ensure_venv() {
  install_venv "$PINPIPE_VENV" "$root/scripts/requirements.txt"
  install_venv "$PINPIPE_CHECKOV_VENV" "$root/scripts/requirements-checkov.txt"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts moto on 127.0.0.1 and points every AWS client at it with fake credentials,
# so nothing ever reaches a real AWS endpoint or the instance-metadata address.
start_moto() {
  local port
  port="$(free_port)"
  MOTO_LOG="$(mktemp -t pinpipe-moto.XXXXXX)"
  "$PINPIPE_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=pinpipe-test AWS_SECRET_ACCESS_KEY=pinpipe-test
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ALLOW_HTTP=true AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
  for _ in $(seq 1 100); do
    if curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1; then return; fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto server failed to start:" >&2; cat "$MOTO_LOG" >&2; return 1
    fi
    sleep 0.2
  done
  echo "moto server did not answer on $AWS_ENDPOINT_URL" >&2
  return 1
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  [ -n "${MOTO_LOG:-}" ] && rm -f "$MOTO_LOG"
}
