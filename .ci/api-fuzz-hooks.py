"""Schemathesis hooks of .ci/api-fuzz.sh: keep the fuzzing fixtures alive, and seed them.

The fuzzed path parameters are pinned (in the generated schemathesis.toml) to a tenant `acme`, its network
and its phone, so that most requests reach the handlers' real work instead of stopping at "no such
tenant". The fuzzer also calls the DELETE operations on exactly those resources; after any request that
may have removed or replaced one of them this module puts them back, with the platform-admin token, so
that every later request still finds them. The network's id changes when it is re-created: requests that
carry the original id are pointed at the current one.

Run as `python api-fuzz-hooks.py seed` it creates the fixtures once and prints the network id. Reads
DIALTONE_FUZZ_URL, DIALTONE_FUZZ_ADMIN_TOKEN and (when loaded as hooks) DIALTONE_FUZZ_NETWORK_ID.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

TENANT = "acme"
NETWORK_CIDR = "10.20.0.0/16"
PHONE_MAC = "0004F2A1B2C3"
PHONE = {
    "model": "7960",
    "label": "Reception",
    "lines": [{"number": "1001", "display_name": "Alice", "password": "s3cret-1001"}],
}
TENANT_BODY = {
    "slug": TENANT,
    "name": "Acme Ltd",
    "settings": {
        "sip": {"registrar": "sip.acme.example", "port": 5060, "transport": "udp"},
        "time": {"ntp_server": "ntp.acme.example", "time_zone": "Europe/London"},
    },
}
# A global file and a tenant file, so that GET/PUT/DELETE of `{name}` can find one.
FILE_NAME = "fuzz.txt"
# A tenant template override, so that GET/PUT/DELETE of `{file}` can find one.
TEMPLATE_FILE = "RINGLIST.DAT"
TEMPLATE_TEXT = b"Old Style\tringer1.pcm\n"

URL = os.environ.get("DIALTONE_FUZZ_URL", "")
TOKEN = os.environ.get("DIALTONE_FUZZ_ADMIN_TOKEN", "")
ORIGINAL_NETWORK_ID = os.environ.get("DIALTONE_FUZZ_NETWORK_ID", "")
_state = {"network_id": ORIGINAL_NETWORK_ID}

# The pinned path parameters (tenant, mac, id) are never generated, and schemathesis leaves NUL and the
# like out of the path parameters it generates or draws from a dictionary. So in the fuzzing phase one
# case in HOSTILE_EVERY gets one of its path parameters replaced by one of these (text a database or a
# parser may choke on, and names that do not exist). Which case, which parameter and which value follow
# from a hash of the case itself, so that a failing case replays the same.
HOSTILE = ["a\x00b", "ACME", "no-such-thing", "%00", " ", "\u00e9", "x" * 300, "0004f2a1b2c3\x00", "-1"]
HOSTILE_EVERY = 8


def _call(method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(URL + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _json(method: str, path: str, value: object) -> tuple[int, bytes]:
    return _call(method, path, json.dumps(value).encode(), "application/json")


def ensure_fixtures() -> str:
    """Creates whatever of the fixtures is missing (and re-enables the tenant); returns the network id."""
    status, _ = _call("GET", f"/v1/tenants/{TENANT}")
    if status == 404:
        status, body = _json("POST", "/v1/tenants", TENANT_BODY)
        if status != 201:
            raise RuntimeError(f"re-creating tenant {TENANT}: {status} {body[:300]!r}")
    # A fuzzed PATCH may have suspended it or replaced its settings: put the seed values back.
    _json("PATCH", f"/v1/tenants/{TENANT}", {"enabled": True, "name": TENANT_BODY["name"]})

    status, body = _call("GET", f"/v1/tenants/{TENANT}/networks?limit=1000")
    if status != 200:
        raise RuntimeError(f"listing networks: {status} {body[:300]!r}")
    network_id = next((n["id"] for n in json.loads(body)["items"] if n["cidr"] == NETWORK_CIDR), None)
    if network_id is None:
        status, body = _json("POST", f"/v1/tenants/{TENANT}/networks", {"cidr": NETWORK_CIDR, "description": "HQ"})
        if status != 201:
            raise RuntimeError(f"re-creating network {NETWORK_CIDR}: {status} {body[:300]!r}")
        network_id = json.loads(body)["id"]

    status, body = _json("PUT", f"/v1/tenants/{TENANT}/phones/{PHONE_MAC}", PHONE)
    if status not in (200, 201):
        raise RuntimeError(f"re-creating phone {PHONE_MAC}: {status} {body[:300]!r}")

    for path in (f"/v1/files/{FILE_NAME}", f"/v1/tenants/{TENANT}/files/{FILE_NAME}"):
        if _call("GET", path)[0] == 404:
            status, body = _call("PUT", path, b"dialtone api fuzzing\n", "application/octet-stream")
            if status not in (200, 201):
                raise RuntimeError(f"re-creating {path}: {status} {body[:300]!r}")
    path = f"/v1/tenants/{TENANT}/templates/{TEMPLATE_FILE}"
    if _call("GET", path)[0] == 404:
        status, body = _call("PUT", path, TEMPLATE_TEXT, "text/plain")
        if status not in (200, 201):
            raise RuntimeError(f"re-creating {path}: {status} {body[:300]!r}")
    _state["network_id"] = network_id
    return network_id


def _may_have_changed_fixtures(method: str, status: int) -> bool:
    return method in ("DELETE", "PATCH", "PUT", "POST") and 200 <= status < 300


try:
    import schemathesis
except ImportError:  # run as a script (seed) outside the venv's schemathesis
    schemathesis = None

if schemathesis is not None:

    def _digest(case) -> int:
        text = repr((case.method, case.path, sorted((case.path_parameters or {}).items()),
                     sorted((case.query or {}).items()), case.body))
        return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")

    @schemathesis.hook
    def before_call(context, case, kwargs):
        params = case.path_parameters
        if not params:
            return
        # The network fixture gets a new id when a fuzzed DELETE removed it and it was re-created.
        if ORIGINAL_NETWORK_ID and params.get("id") == ORIGINAL_NETWORK_ID:
            params["id"] = _state["network_id"]
        phase = getattr(getattr(case.meta, "phase", None), "name", None)
        if str(phase) != "fuzzing":
            return
        h = _digest(case)
        if h % HOSTILE_EVERY == 0:
            h //= HOSTILE_EVERY
            names = sorted(params)
            params[names[h % len(names)]] = HOSTILE[(h // len(names)) % len(HOSTILE)]

    @schemathesis.hook
    def filter_failure(context, failure, case, response):
        # A partial import (`partial=true`) answers 200 with a report that refuses each invalid row by
        # itself and applies the others: a row that violates the schema is rejected there, not by the
        # status code. Keep any other failure, and this one when the report does not refuse a row.
        if failure.code != "ST201" or not case.path.endswith("/phone-imports"):
            return True
        if str((case.query or {}).get("partial")).lower() != "true" or response.status_code != 200:
            return True
        try:
            report = response.json()
        except ValueError:
            return True
        return not (isinstance(report, dict) and isinstance(report.get("errors"), int) and report["errors"] > 0)

    @schemathesis.hook
    def after_call(context, case, response):
        if _may_have_changed_fixtures(case.method.upper(), response.status_code):
            ensure_fixtures()


if __name__ == "__main__":
    if sys.argv[1:] != ["seed"]:
        sys.exit("usage: api-fuzz-hooks.py seed")
    print(ensure_fixtures())
