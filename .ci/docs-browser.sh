#!/usr/bin/env bash
# The interactive API documentation (/docs/, Swagger UI served from the binary) rendered in a real
# headless browser with every outside host unreachable: the page must list dialtone's operations.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
bin=${DIALTONE_BIN:-target/debug/dialtone}
[ -x "$bin" ] || cargo build --bin dialtone
work=$(mktemp -d -p /tmp dialtone-docs.XXXXXX); chmod 755 "$work"
log="$work/server.log"
cleanup() {
  [ -n "${server:-}" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
env -u DIALTONE_DATABASE_URL DIALTONE_DATA_DIR="$work/data" DIALTONE_API_LISTEN=127.0.0.1:0 \
  DIALTONE_TFTP_LISTEN=127.0.0.1:0 DIALTONE_HTTP_LISTEN=127.0.0.1:0 DIALTONE_LOG=info "$bin" serve >"$log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 240); do
  url=$(grep -o 'API listening on http://[0-9.:]*' "$log" | head -1 | sed 's/API listening on //') || true
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; echo "docs-browser: 0 passed, 1 failed"; exit 1; }
  sleep 0.5
done
[ -n "$url" ] || { cat "$log"; echo "docs-browser: 0 passed, 1 failed"; exit 1; }
# --host-resolver-rules makes every name but localhost unresolvable: a CDN dependency would show.
dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
  --virtual-time-budget=15000 --dump-dom "$url/docs/" 2>/dev/null)
fail=0
for want in 'class="swagger-ui' '/v1/tenants/{tenant}/phones/{mac}' 'opblock-tag' 'dialtone'; do
  if ! grep -q -- "$want" <<<"$dom"; then echo "docs-browser: the rendered page lacks: $want"; fail=1; fi
done
if [ "$fail" = 0 ]; then echo "docs-browser: 1 passed, 0 failed"; else echo "docs-browser: 0 passed, 1 failed"; exit 1; fi
