#!/usr/bin/env bash
# The committed OpenAPI document must be usable, not only valid: validate openapi/openapi.json with
# openapi-spec-validator, generate a Python client from it with openapi-python-client, and drive the
# README's walk-through (tests/client/walkthrough.py) with that client against a running `dialtone serve`
# on a private data dir. Then stop the server with SIGTERM and check that it exits 0 and that its private
# PostgreSQL is gone.
#
# Run from anywhere as `bash .ci/openapi-client.sh`. Needs python3 (with venv, installed from Debian's
# packages when missing and run as root) and PyPI. Uses target/debug/dialtone (built when missing;
# DIALTONE_BIN overrides). The last line is `openapi-client: N passed, M failed`.
set -euo pipefail

# Pinned tools (both run on Python 3.11; the generated client needs Python >= 3.11).
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1

START_DEADLINE=120   # seconds for the server to log its API address (includes initdb)
STOP_DEADLINE=30     # seconds for the server to exit after SIGTERM
PG_GONE_DEADLINE=5   # seconds for the private PostgreSQL to be gone after that
WALK_DEADLINE=300    # seconds for the walk-through

cd "$(dirname "$0")/.."
repo=$(pwd)
bin=${DIALTONE_BIN:-target/debug/dialtone}

# Under /tmp, whatever TMPDIR says: the private PostgreSQL (another user) must reach it.
work=$(mktemp -d /tmp/dialtone-openapi-client.XXXXXX)
# The private PostgreSQL runs as another user: it must be able to reach the data dir.
chmod 755 "$work"
data="$work/data"
log="$work/server.log"
result=""

say() { echo "openapi-client: $*"; }

fail() {
    echo "openapi-client: FAIL: $*" >&2
    result=failed
    exit 1
}

# shellcheck source=.ci/server.sh
source "$repo/.ci/server.sh"

cleanup() {
    local rc=$?
    set +e
    kill_server
    rm -rf "$work"
    if [[ $rc -eq 0 && -z $result ]]; then
        say "1 passed, 0 failed"
    else
        say "0 passed, 1 failed"
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------------------------------

ensure_bin
make_venv
say "installing openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION"
"$py" -m pip install --quiet --disable-pip-version-check --no-input \
    "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" \
    "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" ||
    fail "pip could not install the tools"

# --- the document -----------------------------------------------------------------------------------

say "validating openapi/openapi.json"
"$venv/bin/openapi-spec-validator" openapi/openapi.json || fail "openapi/openapi.json is not a valid OpenAPI document"

say "generating the Python client"
# The generator formats its output with ruff, which it installs into the venv: put the venv first on PATH.
# Any generator warning (a schema or operation it could not turn into code) fails the check.
PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
    --path openapi/openapi.json --output-path "$work/client" --meta poetry --fail-on-warning \
    >"$work/generate.log" 2>&1 || { cat "$work/generate.log" >&2; fail "openapi-python-client could not generate a clean client"; }
"$py" -m pip install --quiet --disable-pip-version-check --no-input "$work/client" ||
    fail "the generated client does not install"

# --- the server -------------------------------------------------------------------------------------

start_server

token=$(env -u DIALTONE_DATABASE_URL DIALTONE_DATA_DIR="$data" "$bin" token issue --role platform-admin) ||
    { show_log; fail "dialtone token issue failed"; }

# --- the walk-through -------------------------------------------------------------------------------

walk_rc=0
DIALTONE_URL="$url" DIALTONE_TOKEN="$token" DIALTONE_OPENAPI="$repo/openapi/openapi.json" \
    timeout "$WALK_DEADLINE" "$py" tests/client/walkthrough.py || walk_rc=$?

# --- shutdown ---------------------------------------------------------------------------------------

stop_server

if [[ $walk_rc -ne 0 ]]; then
    show_log
    fail "the walk-through failed (exit $walk_rc)"
fi
