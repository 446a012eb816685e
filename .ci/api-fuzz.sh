#!/usr/bin/env bash
# API fuzzing against the committed OpenAPI document: schemathesis generates requests for every operation of
# openapi/openapi.json (from its examples, a coverage sweep of each schema's edges, and random fuzzing) and
# checks every response: no 5xx, a documented status code, a documented Content-Type, a body that matches
# the documented schema, documented headers, schema-violating requests refused, 401 without or with a
# bad token, 405 with `Allow` for undeclared methods. It runs twice against one `dialtone serve` on a
# private data dir: with a platform-admin token and with a tenant-admin token of `acme`. Then it stops
# the server with SIGTERM and checks that its private PostgreSQL is gone.
#
# Path parameters are pinned to seeded data (tenant `acme`, its network and its phone; file and template
# names are drawn mostly from names that exist) so that requests reach the handlers instead of 404;
# .ci/api-fuzz-hooks.py re-creates those fixtures whenever a fuzzed request may have removed them.
#
# Run from anywhere as `bash .ci/api-fuzz.sh`. Needs python3 (with venv) and PyPI. Uses
# target/debug/dialtone (built when missing; DIALTONE_BIN overrides). Knobs: API_FUZZ_MAX_EXAMPLES
# (per operation and phase, default 100), API_FUZZ_SEED (default 20261125), API_FUZZ_REPORT_DIR (keep the
# NDJSON and JUnit reports there). The last line is `api-fuzz: N passed, M failed` (one per token).
set -euo pipefail

# Pinned tools. hypothesis is pinned too: a fixed seed only reproduces with the same generator.
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.17

MAX_EXAMPLES=${API_FUZZ_MAX_EXAMPLES:-100}
SEED=${API_FUZZ_SEED:-20261125}

START_DEADLINE=120   # seconds for the server to log its API address (includes initdb)
STOP_DEADLINE=30     # seconds for the server to exit after SIGTERM
PG_GONE_DEADLINE=5   # seconds for the private PostgreSQL to be gone after that
RUN_DEADLINE=600     # seconds for one schemathesis run

cd "$(dirname "$0")/.."
repo=$(pwd)
# No .ci/__pycache__ from loading the hooks file.
export PYTHONDONTWRITEBYTECODE=1
bin=${DIALTONE_BIN:-target/debug/dialtone}

# Under /tmp, whatever TMPDIR says: the private PostgreSQL (another user) must reach it.
work=$(mktemp -d /tmp/dialtone-api-fuzz.XXXXXX)
chmod 755 "$work"
data="$work/data"
log="$work/server.log"
passed=0
failed=0
fatal=""

say() { echo "api-fuzz: $*"; }

# A failure that stops the script (setup, server start/stop); a failed fuzzing run does not.
fail() {
    echo "api-fuzz: FAIL: $*" >&2
    fatal=yes
    exit 1
}

# shellcheck source=.ci/server.sh
source "$repo/.ci/server.sh"

cleanup() {
    local rc=$?
    set +e
    kill_server
    rm -rf "$work"
    if [[ -n $fatal || $rc -ne 0 ]]; then
        rc=1
        if [[ $((passed + failed)) -lt 2 ]]; then
            # The runs not done count as failed.
            failed=$((2 - passed))
        elif [[ $failed -eq 0 ]]; then
            # Both runs passed but the server did not stop cleanly: that fails the last one.
            passed=$((passed - 1))
            failed=1
        fi
    fi
    say "$passed passed, $failed failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------------------------------

ensure_bin
make_venv
say "installing schemathesis==$SCHEMATHESIS_VERSION hypothesis==$HYPOTHESIS_VERSION"
"$py" -m pip install --quiet --disable-pip-version-check --no-input \
    "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION" ||
    fail "pip could not install schemathesis"

# --- the server -------------------------------------------------------------------------------------

start_server

issue_token() {
    env -u DIALTONE_DATABASE_URL DIALTONE_DATA_DIR="$data" "$bin" token issue "$@"
}
platform_token=$(issue_token --role platform-admin) || { show_log; fail "dialtone token issue failed"; }
tenant_token=$(issue_token --role tenant-admin --tenant acme) || { show_log; fail "dialtone token issue failed"; }

# --- fixtures and configuration ---------------------------------------------------------------------

hooks="$repo/.ci/api-fuzz-hooks.py"
export DIALTONE_FUZZ_URL="$url" DIALTONE_FUZZ_ADMIN_TOKEN="$platform_token"
network_id=$("$py" "$hooks" seed) || { show_log; fail "seeding tenant acme, its network and its phone failed"; }
export DIALTONE_FUZZ_NETWORK_ID="$network_id"
say "seeded tenant acme, network $network_id, phone 0004F2A1B2C3, files fuzz.txt, template RINGLIST.DAT"

# Scalar parameters are used in every phase; dictionary bindings replace a generated value with the given
# probability (fuzzing phase), so that the other draws still try unknown and malformed names.
config="$work/schemathesis.toml"
cat >"$config" <<EOF
hooks = "$hooks"

[parameters]
"path.tenant" = "acme"
"path.mac" = "0004F2A1B2C3"
"path.id" = "$network_id"
"path.name" = { dictionary = "file_names", probability = 0.7 }
"path.file_name" = { dictionary = "file_names", probability = 0.7 }
"path.file" = { dictionary = "template_names", probability = 0.7 }
# Most writes carry a matching If-Match, so that their bodies are read rather than refused with 412.
"header.If-Match" = { dictionary = "if_match", probability = 0.8 }
# Free-text query parameters get hostile text now and then (random text seldom holds a NUL).
"query.tenant" = { dictionary = "hostile", probability = 0.15 }
"query.q" = { dictionary = "hostile", probability = 0.15 }
"query.model" = { dictionary = "hostile", probability = 0.15 }
"query.cursor" = { dictionary = "hostile", probability = 0.15 }
"query.format" = { dictionary = "hostile", probability = 0.15 }
"query.mac" = { dictionary = "hostile", probability = 0.15 }

[dictionaries.file_names]
values = ["fuzz.txt", "SIPDefault.cnf", "OS79XX.TXT", "SIP0004F2A1B2C3.cnf", "SEP0004F2A1B2C3.cnf.xml", "dialplan.xml", "RINGLIST.DAT", "a\u0000b", "no-such-file.bin"]

[dictionaries.template_names]
values = ["SIPDefault.cnf", "SIPMAC.cnf", "SEPMAC.cnf.xml", "XMLDefault.cnf.xml", "OS79XX.TXT", "dialplan.xml", "RINGLIST.DAT", "a\u0000b", "nope"]

[dictionaries.hostile]
values = ["a\u0000b", "\u0000", "ACME", "no-such-thing", "%00", " ", "\u00e9", "-1", "0004f2a1b2c3\u0000"]

[dictionaries.if_match]
values = ["*"]

# A request that violates the schema must be refused with a 4xx. 412 (a write whose If-Match does not
# match, checked before the body is read) and 413 are refusals too; a 5xx is reported by not_a_server_error.
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 412, 413, 415, 422, 428, 429, "5xx"]
EOF

# --- the runs ---------------------------------------------------------------------------------------

# positive_data_acceptance is excluded: it wants every schema-valid request accepted, but the document
# cannot say everything the server validates (CIDR and MAC syntax, cross-field rules such as
# end_media_port > start_media_port, template syntax, opaque cursors, If-Match values), so the server
# rightly refuses many schema-valid requests with 422/412/404.
# The stateful phase is not run: it relies on DELETE removing for good what the hooks re-create.
# One worker: schemathesis' coverage phase parses lambdas with ast.parse, which is not thread-safe on
# CPython 3.11 ("AST constructor recursion depth mismatch").
# --continue-on-failure: report every distinct failure of an operation, not only its first.
fuzz() {
    local who=$1 token=$2 out="$work/$1.txt" rc=0
    say "fuzzing all operations as $who (max $MAX_EXAMPLES examples per operation, seed $SEED)"
    timeout "$RUN_DEADLINE" "$venv/bin/schemathesis" --config-file "$config" run openapi/openapi.json \
        --url "$url" \
        --header "Authorization: Bearer $token" \
        --checks all --exclude-checks positive_data_acceptance \
        --phases examples,coverage,fuzzing \
        --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 --continue-on-failure \
        --generation-database none \
        --request-timeout 30 \
        --no-color \
        --report junit,ndjson --report-dir "$work/reports-$who" \
        >"$out" 2>&1 || rc=$?
    cat "$out"
    if [[ -n ${API_FUZZ_REPORT_DIR:-} ]]; then
        mkdir -p "$API_FUZZ_REPORT_DIR/$who"
        cp -r "$work/reports-$who/." "$API_FUZZ_REPORT_DIR/$who/"
        cp "$out" "$API_FUZZ_REPORT_DIR/$who/output.txt"
    fi
    if [[ $rc -eq 0 ]]; then
        say "$who: no failures"
        passed=$((passed + 1))
    else
        if [[ $rc -eq 124 ]]; then
            say "$who: FAIL: schemathesis did not finish within ${RUN_DEADLINE}s"
        else
            say "$who: FAIL: schemathesis found failures or errors (exit $rc)"
        fi
        failed=$((failed + 1))
    fi
}

start=$SECONDS
fuzz platform-admin "$platform_token"
fuzz tenant-admin "$tenant_token"
say "both runs took $((SECONDS - start))s"

# --- shutdown ---------------------------------------------------------------------------------------

stop_server
if [[ $failed -gt 0 ]]; then
    exit 1
fi
