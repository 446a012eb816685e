#!/usr/bin/env python3
"""The README walk-through, driven by a client generated from the committed OpenAPI document.

`.ci/openapi-client.sh` generates the `dialtone_client` package from `openapi/openapi.json` with
openapi-python-client, installs it, starts `dialtone serve` and runs this script with:

    DIALTONE_URL      base URL of the API (`http://127.0.0.1:PORT`)
    DIALTONE_TOKEN    a platform-admin bearer token
    DIALTONE_OPENAPI  the document the client was generated from (default: openapi/openapi.json of this repo)

Every call goes through the generated client. Besides the values the walk-through cares about, each
exchange is checked against the document itself:

  * the status is one the operation documents, with the documented content type;
  * the body the generated client sent validates against the documented request schema;
  * the body the server returned validates against the documented response schema;
  * the generated client parsed every nested object into its model (the generated parsers fall back to
    the raw JSON silently when a model does not fit) and met no property the document does not declare.

Any mismatch exits non-zero with a message naming the operation and what differed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import attrs
import httpx

try:
    from dialtone_client import AuthenticatedClient
    from dialtone_client.api.networks import create_network, list_networks
    from dialtone_client.api.phones import list_phones, put_phone
    from dialtone_client.api.tenants import create_tenant, get_tenant, list_tenants
    from dialtone_client.models import (
        CreateNetwork,
        CreateTenant,
        DialRule,
        FirmwareSettings,
        FirmwareSettingsLoadsType0,
        LineInput,
        LineOut,
        Network,
        NetworkPage,
        Phone,
        PhonePage,
        PhoneSpecInput,
        Problem,
        RingTone,
        Settings,
        SipSettings,
        Tenant,
        TenantPage,
        TimeSettings,
        Transport,
    )
    from dialtone_client.types import UNSET, Response
except ImportError as e:  # the document changed so that the generated client lacks something used here
    print(f"walkthrough: FAIL: the generated client lacks what the walk-through needs: {e}", file=sys.stderr)
    sys.exit(1)

from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS31Validator

REPO = Path(__file__).resolve().parents[2]

# The settings of the walk-through's tenant, as JSON (what the README shows) ...
ACME_SETTINGS_JSON: dict[str, Any] = {
    "sip": {"registrar": "sip.acme.example", "port": 5060, "transport": "udp"},
    "time": {"ntp_server": "ntp.acme.example", "time_zone": "Europe/London"},
    "voicemail_number": "*97",
    "dial_plan": [{"match": "9.", "timeout": 3}],
    "ring_list": [{"name": "Old Style", "file": "ringer1.pcm"}],
    "firmware": {"os79xx": "P0S3-8-12-00", "loads": {"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}},
}

TIMEOUT = httpx.Timeout(30.0)
MAC_INPUT = "00:04:f2:a1:b2:c3"
MAC_CANONICAL = "0004F2A1B2C3"


class Failure(Exception):
    """A mismatch between what the walk-through expects and what happened."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


# --- checks against the document -------------------------------------------------------------------


class Document:
    """The OpenAPI document the client was generated from, for checking exchanges against it."""

    def __init__(self, path: Path) -> None:
        self.doc = json.loads(path.read_text())
        self.ops: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for p, item in self.doc["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    self.ops[op["operationId"]] = (method.upper(), p, op)

    def _validate(self, schema: dict[str, Any], value: Any, what: str) -> None:
        # The schemas refer to #/components/...: validate against them with the components beside.
        root = dict(schema)
        root["components"] = self.doc.get("components", {})
        validator = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"{what} does not match the document's schema:"]
            for e in errors[:5]:
                e = best_match([e])  # inside a oneOf/anyOf: the alternative that came closest
                at = "/".join(str(p) for p in e.absolute_path) or "(root)"
                lines.append(f"  at {at}: {e.message}")
            raise Failure("\n".join(lines))

    def check_request(self, op_id: str, body: Any) -> None:
        method, path, op = self.ops[op_id]
        content = op.get("requestBody", {}).get("content", {})
        check("application/json" in content, f"{op_id} ({method} {path}) documents no application/json request body")
        self._validate(content["application/json"]["schema"], body, f"the request body of {op_id} ({method} {path})")

    def check_response(self, op_id: str, resp: Response) -> Any:
        method, path, op = self.ops[op_id]
        status = str(int(resp.status_code))
        documented = op.get("responses", {})
        check(status in documented,
              f"{op_id} ({method} {path}) answered {status}, which the document does not list "
              f"(it lists {', '.join(documented)}); body: {resp.content[:300]!r}")
        content = documented[status].get("content", {})
        if not content:
            check(not resp.content, f"{op_id} {status}: the document declares no body but one came: {resp.content[:300]!r}")
            return None
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        check(ctype in content,
              f"{op_id} {status}: content type {ctype!r} is not the documented {', '.join(content)}")
        body = json.loads(resp.content)
        self._validate(content[ctype]["schema"], body, f"the {status} response of {op_id} ({method} {path})")
        return body


def check_parsed(obj: Any, where: str) -> None:
    """Fails if the generated client left a nested object unparsed (its parsers fall back to the raw JSON
    when a model does not fit) or put properties the document does not declare into `additional_properties`.
    Free-form maps (models with no declared fields) are allowed any keys."""
    if attrs.has(type(obj)):
        declared = [f.name for f in attrs.fields(type(obj)) if f.name != "additional_properties"]
        extra = getattr(obj, "additional_properties", None)
        if declared and extra:
            raise Failure(f"{where}: the server sent properties {sorted(extra)} that {type(obj).__name__} "
                          f"does not declare in the document")
        for name in declared:
            check_parsed(getattr(obj, name), f"{where}.{name}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            check_parsed(item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        raise Failure(f"{where}: the generated client could not parse this object into its model and kept the "
                      f"raw JSON {json.dumps(obj)[:200]}")


# --- the walk-through --------------------------------------------------------------------------------


class Walk:
    def __init__(self, url: str, token: str, doc: Document) -> None:
        self.client = AuthenticatedClient(base_url=url, token=token, raise_on_unexpected_status=True,
                                          timeout=TIMEOUT)
        self.url = url
        self.doc = doc
        self.steps = 0

    def call(self, module: Any, expect_status: int, expect_type: type, body: Any = None,
             client: AuthenticatedClient | None = None, **kwargs: Any) -> tuple[Any, Any]:
        """Calls `module.sync_detailed`, checks the exchange against the document, the status and the
        parsed type; returns (parsed model, raw JSON)."""
        op_id = module.__name__.rsplit(".", 1)[-1]
        if body is not None:
            kwargs["body"] = body
            self.doc.check_request(op_id, body.to_dict())
        resp: Response = module.sync_detailed(client=client or self.client, **kwargs)
        raw = self.doc.check_response(op_id, resp)
        check(int(resp.status_code) == expect_status,
              f"{op_id}: expected {expect_status}, got {int(resp.status_code)}: {resp.content[:500]!r}")
        check(isinstance(resp.parsed, expect_type),
              f"{op_id} {expect_status}: the generated client returned {type(resp.parsed).__name__}, "
              f"expected {expect_type.__name__}")
        check_parsed(resp.parsed, f"{op_id} {expect_status} {expect_type.__name__}")
        return resp.parsed, raw

    def ok(self, what: str) -> None:
        self.steps += 1
        print(f"ok {self.steps} - {what}", flush=True)

    def run(self) -> None:
        # 1. A tenant with the walk-through's settings, built from the generated models.
        settings = Settings(
            sip=SipSettings(registrar="sip.acme.example", port=5060, transport=Transport.UDP),
            time=TimeSettings(ntp_server="ntp.acme.example", time_zone="Europe/London"),
            voicemail_number="*97",
            dial_plan=[DialRule(match="9.", timeout=3)],
            ring_list=[RingTone(name="Old Style", file="ringer1.pcm")],
            firmware=FirmwareSettings(
                os79xx="P0S3-8-12-00",
                loads=FirmwareSettingsLoadsType0.from_dict({"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}),
            ),
        )
        check(settings.to_dict() == ACME_SETTINGS_JSON,
              f"the generated Settings model serialises to {settings.to_dict()}, not the walk-through's JSON")
        tenant, _ = self.call(create_tenant, 201, Tenant, body=CreateTenant(slug="acme", name="Acme Ltd", settings=settings))
        check(tenant.slug == "acme", f"create_tenant: slug {tenant.slug!r}")
        check(tenant.name == "Acme Ltd", f"create_tenant: name {tenant.name!r}")
        check(tenant.enabled is True, f"create_tenant: enabled {tenant.enabled!r} (default is true)")
        check(isinstance(tenant.settings, Settings), "create_tenant: settings not parsed as Settings")
        check(tenant.settings.to_dict() == ACME_SETTINGS_JSON,
              f"create_tenant: settings came back as {tenant.settings.to_dict()}")
        check(isinstance(tenant.settings.sip, SipSettings) and tenant.settings.sip.transport == Transport.UDP,
              f"create_tenant: settings.sip.transport is {getattr(tenant.settings.sip, 'transport', None)!r}")
        check(isinstance(tenant.settings.firmware, FirmwareSettings)
              and tenant.settings.firmware.loads["7942"] == "SIP42.9-4-2SR3-1S",
              "create_tenant: settings.firmware.loads lost the 7942 load")
        self.ok("POST /v1/tenants created acme with its settings (201 Tenant)")

        # 2. The network its phones provision from.
        network, _ = self.call(create_network, 201, Network, tenant="acme",
                               body=CreateNetwork(cidr="10.20.0.0/16", description="HQ"))
        check(network.cidr == "10.20.0.0/16", f"create_network: cidr {network.cidr!r}")
        check(network.description == "HQ", f"create_network: description {network.description!r}")
        page, _ = self.call(list_networks, 200, NetworkPage, tenant="acme")
        check([n.cidr for n in page.items] == ["10.20.0.0/16"],
              f"list_networks: {[n.cidr for n in page.items]}")
        check(page.next_cursor in (None, UNSET), f"list_networks: next_cursor {page.next_cursor!r} on the only page")
        self.ok("POST /v1/tenants/acme/networks added 10.20.0.0/16 (201 Network); GET lists it")

        # 3. A phone, created by PUT with a line password; PUT again without it keeps the password.
        spec = PhoneSpecInput(
            model="7960",
            label="Reception",
            lines=[LineInput(number="1001", display_name="Alice", password="s3cret-1001")],
        )
        phone, raw = self.call(put_phone, 201, Phone, tenant="acme", mac=MAC_INPUT, body=spec)
        check(phone.mac == MAC_CANONICAL, f"put_phone: mac {phone.mac!r}, expected {MAC_CANONICAL!r}")
        check(phone.model == "7960", f"put_phone: model {phone.model!r}")
        check(len(phone.lines) == 1 and isinstance(phone.lines[0], LineOut), f"put_phone: lines {phone.lines!r}")
        check(phone.lines[0].password_set is True, f"put_phone: password_set {phone.lines[0].password_set!r}")
        check("s3cret-1001" not in json.dumps(raw), "put_phone: the response repeats the line password")
        self.ok(f"PUT /v1/tenants/acme/phones/{MAC_INPUT} created the 7960 (201 Phone)")

        again = PhoneSpecInput(model="7960", label="Reception", lines=[LineInput(number="1001", display_name="Alice")])
        phone, _ = self.call(put_phone, 200, Phone, tenant="acme", mac=MAC_CANONICAL, body=again)
        check(phone.lines[0].password_set is True,
              "put_phone (replace without password): the stored password was not kept")
        self.ok("PUT again without the password replaced it (200 Phone) and kept the password")

        # 4. The phone list: canonical MAC, password set, the password itself nowhere.
        page, raw = self.call(list_phones, 200, PhonePage, tenant="acme")
        check(len(page.items) == 1, f"list_phones: {len(page.items)} phones, expected 1")
        listed = page.items[0]
        check(listed.mac == MAC_CANONICAL, f"list_phones: mac {listed.mac!r}, expected {MAC_CANONICAL!r}")
        check(listed.model == "7960", f"list_phones: model {listed.model!r}")
        check(listed.label == "Reception", f"list_phones: label {listed.label!r}")
        line = listed.lines[0]
        check(line.number == "1001" and line.auth_name == "1001" and line.position == 1,
              f"list_phones: line {line.to_dict()}")
        check(line.display_name == "Alice", f"list_phones: display_name {line.display_name!r}")
        check(line.password_set is True, f"list_phones: password_set {line.password_set!r}")
        check(not hasattr(line, "password") and "password" not in line.additional_properties,
              "list_phones: the parsed line carries a password")

        def keys(v: Any) -> set[str]:
            if isinstance(v, dict):
                return set(v) | {k for x in v.values() for k in keys(x)}
            if isinstance(v, list):
                return {k for x in v for k in keys(x)}
            return set()

        check("password" not in keys(raw), "list_phones: the raw response has a `password` member")
        check("s3cret-1001" not in json.dumps(raw), "list_phones: the raw response contains the line password")
        self.ok(f"GET /v1/tenants/acme/phones lists {MAC_CANONICAL} with password_set and no password")

        # 5. The tenant as stored.
        got, _ = self.call(get_tenant, 200, Tenant, tenant="acme")
        check(got.id == tenant.id, f"get_tenant: id {got.id} differs from the created {tenant.id}")
        check(got.settings.to_dict() == ACME_SETTINGS_JSON, f"get_tenant: settings {got.settings.to_dict()}")
        check(isinstance(got.settings.dial_plan, list) and isinstance(got.settings.dial_plan[0], DialRule)
              and got.settings.dial_plan[0].timeout == 3,
              f"get_tenant: dial_plan {got.settings.dial_plan!r}")
        self.ok("GET /v1/tenants/acme returns the tenant and its settings (200 Tenant)")

        # 6. Errors are problem+json, parsed as Problem.
        self.call(create_tenant, 201, Tenant, body=CreateTenant(slug="globex", name="Globex"))
        problem, _ = self.call(create_network, 409, Problem, tenant="globex",
                               body=CreateNetwork(cidr="10.20.128.0/17"))
        check(problem.status == 409, f"create_network overlap: Problem.status {problem.status}")
        check(problem.type_.endswith("/conflict"), f"create_network overlap: Problem.type {problem.type_!r}")
        check("10.20.0.0/16" in problem.detail, f"create_network overlap: detail {problem.detail!r}")
        self.ok("an overlapping network in another tenant is a 409 Problem")

        problem, _ = self.call(put_phone, 422, Problem, tenant="acme", mac="not-a-mac",
                               body=PhoneSpecInput(model="7960", lines=[LineInput(number="1002")]))
        check(problem.status == 422, f"put_phone bad MAC: Problem.status {problem.status}")
        check(isinstance(problem.errors, list) and len(problem.errors) >= 1,
              f"put_phone bad MAC: Problem.errors {problem.errors!r}")
        check(problem.errors[0].path == "mac", f"put_phone bad MAC: errors[0].path {problem.errors[0].path!r}")
        self.ok("a bad MAC is a 422 Problem with errors[0].path == \"mac\"")

        bad = AuthenticatedClient(base_url=self.url, token="not-a-token", raise_on_unexpected_status=True,
                                  timeout=TIMEOUT)
        problem, _ = self.call(list_tenants, 401, Problem, client=bad)
        check(problem.status == 401, f"list_tenants without a valid token: Problem.status {problem.status}")
        page, _ = self.call(list_tenants, 200, TenantPage)
        check([t.slug for t in page.items] == ["acme", "globex"], f"list_tenants: {[t.slug for t in page.items]}")
        self.ok("GET /v1/tenants: 401 Problem with a bad token, both tenants by slug with a good one")


def main() -> int:
    url = os.environ.get("DIALTONE_URL")
    token = os.environ.get("DIALTONE_TOKEN")
    if not url or not token:
        print("walkthrough: FAIL: set DIALTONE_URL and DIALTONE_TOKEN", file=sys.stderr)
        return 2
    doc = Document(Path(os.environ.get("DIALTONE_OPENAPI", REPO / "openapi" / "openapi.json")))
    walk = Walk(url.rstrip("/"), token, doc)
    try:
        walk.run()
    except Failure as e:
        print(f"walkthrough: FAIL after {walk.steps} step(s): {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the generated client itself broke (e.g. UnexpectedStatus, a parse error)
        import traceback

        traceback.print_exc()
        print(f"walkthrough: FAIL after {walk.steps} step(s): {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"walkthrough: all {walk.steps} steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
