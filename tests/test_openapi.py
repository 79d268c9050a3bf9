"""``/api/openapi.json``: a valid OpenAPI 3.1 description that the server keeps.

Checks: openapi-spec-validator accepts it; it names every route of the application; the
snapshot schema (JSON Schema 2020-12) accepts the document of every recorded line, their
``fields=`` projections, summaries and sections, and refuses what the server never sends;
and schemathesis fuzzes a live simulated server from it (bounded examples), requiring
every answer to have a documented status and content type, a body matching the described
schema, and no 5xx but the documented 503s.
"""
from __future__ import annotations

import csv
import json
import os
import re
from typing import Any, Dict

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from conftest import TESTS_DIR, hub_app_case
from tegrastats_api import parse_line
from tegrastats_api.app import make_app
from tegrastats_api.config import Config
from tegrastats_api.fields import SHAPE, parse_fields, select
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.openapi import build_spec
from tegrastats_api.sio_route import SocketIORoute
from tegrastats_api.summary import summarize

try:  # schemathesis 3 (the last release for Python 3.8) reads OpenAPI 3.1 only when asked
    from schemathesis.experimental import OPEN_API_3_1

    OPEN_API_3_1.enable()
except ImportError:  # schemathesis 4 reads it as is
    pass

SPEC = build_spec()
SCHEMAS = SPEC["components"]["schemas"]
SAMPLES_TSV = os.path.join(TESTS_DIR, "fixtures", "tegrastats", "samples.tsv")
with open(SAMPLES_TSV, encoding="utf-8", newline="") as _handle:
    LINES = [row["line"] for row in csv.DictReader(_handle, delimiter="\t")]
FIELD_LISTS = ["cpu.usage", "temperature,power.vdd_in.current", "memory.swap.used,gpu.freq,emc",
               "cpu.cores.usage,engines.ape.freq", "mts,extra,schema,source,source_time", "memory.iram.lfb"]


def documents():
    return [parse_line(line, received_at=1_760_000_000.0, source="replay").to_dict() for line in LINES]


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name])


def test_the_description_is_valid_openapi_3_1():
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.1")


def test_it_describes_every_route_of_the_application():
    hub = SnapshotHub("replay")
    limiter = ConnectionLimiter(10)
    config = Config(host="127.0.0.1", port=0)
    app = make_app(hub, limiter, SocketIORoute(hub, limiter, config), config)
    routes = {rule.matcher.regex.pattern.rstrip("$").replace("\\", "") for rule in app.wildcard_router.rules}
    routes -= {"/api/.*", "/(.*)"}  # the JSON 404 and the dashboard's static files
    assert routes | {"/"} == set(SPEC["paths"])
    for path, item in SPEC["paths"].items():
        assert set(item) == {"get"}, path
        assert item["get"]["responses"], path


@pytest.mark.parametrize("index", range(len(LINES)))
def test_the_snapshot_schema_accepts_every_recorded_document(index):
    document = parse_line(LINES[index], received_at=1_760_000_000.0, source="tegrastats").to_dict()
    validator("Snapshot").validate(document)
    validator("SnapshotFields").validate(document)
    validator("Summary").validate(summarize(document))
    for section in ("cpu", "memory", "temperature", "power"):
        validator(section.capitalize() + "Section").validate({section: document[section],
                                                               "timestamp": document["timestamp"]})
    for fields in FIELD_LISTS:
        projection = select(document, parse_fields(fields))
        validator("SnapshotFields").validate(projection)


def test_the_snapshot_schema_refuses_what_the_server_never_sends():
    document = documents()[7]
    bad = [
        dict(document, surprise=1),
        dict(document, cpu=dict(document["cpu"], usage="high")),
        dict(document, power={"vdd_in": {"current": 1.5, "average": 1, "unit": "mW"}}),
        dict(document, memory=dict(document["memory"], ram=dict(document["memory"]["ram"], unit="GB"))),
        {k: v for k, v in document.items() if k != "gpu"},
        dict(document, engines={"vic": {"online": "yes", "usage": None, "freq": None}}),
    ]
    for candidate in bad:
        assert not validator("Snapshot").is_valid(candidate)
    assert not validator("SnapshotFields").is_valid({"cpu": {"usage": 1.0}})  # timestamp is always there


def test_the_schema_knows_every_key_fields_accepts():
    snapshot = SCHEMAS["Snapshot"]["properties"]
    assert set(snapshot) == set(SHAPE)


class TestAnswersFollowTheirSchemas(hub_app_case()):
    __test__ = True

    def body(self, path: str, status: int) -> Any:
        response = self.fetch(path)
        self.assertEqual(response.code, status, path)
        self.assertIn(str(status), SPEC["paths"][path.split("?")[0]]["get"]["responses"], path)
        return json.loads(response.body)

    def test_before_and_after_the_first_sample(self):
        validator("Health").validate(self.body("/api/health", 503))
        validator("Board").validate(self.body("/api/board", 200))  # board facts do not wait for a sample
        for path in ("/api/status", "/api/summary", "/api/history", "/api/cpu"):
            validator("Error").validate(self.body(path, 503))
        validator("Error").validate(self.body("/api/history?seconds=x", 400))
        self.feed(3)
        validator("Health").validate(self.body("/api/health", 200))
        validator("Snapshot").validate(self.body("/api/status", 200))
        validator("Summary").validate(self.body("/api/summary", 200))
        validator("MemorySection").validate(self.body("/api/memory", 200))
        history = self.body("/api/history?seconds=60", 200)
        self.assertEqual(list(history), ["samples"])
        for document in history["samples"]:
            validator("Snapshot").validate(document)
        for document in self.body("/api/history?fields=gpu.freq", 200)["samples"]:
            validator("SnapshotFields").validate(document)


class TestServedDescription(hub_app_case()):
    __test__ = True
    config = Config(host="127.0.0.1", port=0, auth_token="s3cret")

    def test_served_with_the_token(self):
        self.assertEqual(self.fetch("/api/openapi.json").code, 401)
        response = self.fetch("/api/openapi.json?token=s3cret")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("application/json"))
        self.assertEqual(json.loads(response.body), SPEC)


# --- fuzzing a live server ---------------------------------------------------------------

schema = schemathesis.openapi.from_dict(build_spec())


@pytest.fixture(scope="module")
def fuzz_server():
    """A simulated AGX Orin with fresh data and a short history (bodies stay small)."""
    import time

    from tegrastats_api import TegrastatsServer

    server = TegrastatsServer(Config(host="127.0.0.1", port=0, simulate="agx-orin", update_interval=0.1,
                                     history_size=20))
    server.start()
    try:
        deadline = time.monotonic() + 10
        while requests.get(server.url + "/api/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the simulated server never became healthy"
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzz_every_endpoint(case, fuzz_server):
    response = case.call_and_validate(
        base_url=fuzz_server.url, timeout=10,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    assert response.status_code < 500 or response.status_code == 503, (case.path, response.status_code)
    assert response.status_code != 404, case.path


def test_the_fuzzed_server_answers_every_path(fuzz_server):
    for path in SPEC["paths"]:
        answer = requests.get(fuzz_server.url + path, timeout=5)
        documented = SPEC["paths"][path]["get"]["responses"]
        assert str(answer.status_code) in documented, (path, answer.status_code)
        if path.startswith("/api/") and path != "/api/openapi.json":
            body: Dict[str, Any] = answer.json()
            assert isinstance(body, dict)
    assert re.match(r"^\d+\.\d+\.\d+", SPEC["info"]["version"])
