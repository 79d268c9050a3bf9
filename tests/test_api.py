"""REST endpoints over a real socket (AsyncHTTPTestCase), with a hub fed real lines."""
from __future__ import annotations

import json
import os

from conftest import hub_app_case
from tegrastats_api import __version__
from tegrastats_api.app import default_static_dir
from tegrastats_api.config import Config

DATA_PATHS = ["/api/status", "/api/cpu", "/api/memory", "/api/temperature", "/api/power"]
HEALTH_KEYS = {
    "status", "service", "timestamp", "connected_clients", "max_connections", "source",
    "last_sample_age", "samples", "parse_errors", "restarts", "interval", "stale_after", "version", "model",
}
JSON_TYPE = "application/json; charset=UTF-8"


class APITestCase(hub_app_case()):
    """An application over an empty hub; ``feed()`` adds samples."""

    def get_json(self, path, status=200, **kwargs):
        response = self.fetch(path, **kwargs)
        self.assertEqual(response.code, status, response.body)
        self.assertEqual(response.headers["Content-Type"], JSON_TYPE)
        return response, json.loads(response.body)

    def assert_error(self, path, status, message=None, **kwargs):
        _, body = self.get_json(path, status, **kwargs)
        self.assertEqual(set(body), {"error", "status"})
        self.assertEqual(body["status"], status)
        if message is not None:
            self.assertEqual(body["error"], message)


class TestEndpoints(APITestCase):
    __test__ = True

    def test_status_is_the_pre_encoded_document(self):
        self.feed(2)
        response, body = self.get_json("/api/status")
        self.assertEqual(response.body, self.hub.latest_json)
        self.assertEqual(body, self.hub.latest_document)
        self.assertEqual(body["schema"], 1)
        self.assertEqual(body["source"], "replay")

    def test_sections(self):
        self.feed()
        for section in ["cpu", "memory", "temperature", "power"]:
            _, body = self.get_json("/api/" + section)
            self.assertEqual(set(body), {section, "timestamp"})
            self.assertEqual(body[section], self.hub.latest_document[section])
            self.assertEqual(body["timestamp"], self.hub.latest_document["timestamp"])

    def test_common_headers(self):
        self.feed()
        for path in DATA_PATHS + ["/api/health", "/api/nope"]:
            response = self.fetch(path, headers={"Origin": "http://elsewhere.example"})
            self.assertEqual(response.headers["Content-Type"], JSON_TYPE, path)
            self.assertEqual(response.headers["Cache-Control"], "no-store", path)
            self.assertEqual(response.headers["Access-Control-Allow-Origin"], "*", path)
            self.assertNotIn("Etag", response.headers)

    def test_no_data_yet(self):
        for path in DATA_PATHS:
            self.assert_error(path, 503, "no data yet")

    def test_options(self):
        for path in DATA_PATHS + ["/api/health"]:
            response = self.fetch(path, method="OPTIONS")
            self.assertEqual(response.code, 204, path)
            self.assertEqual(response.body, b"")
            self.assertIn("GET", response.headers["Access-Control-Allow-Methods"])
            self.assertIn("Authorization", response.headers["Access-Control-Allow-Headers"])
            self.assertEqual(response.headers["Access-Control-Allow-Origin"], "*")

    def test_head(self):
        self.feed()
        for path in DATA_PATHS + ["/api/health"]:
            full = self.fetch(path)
            response = self.fetch(path, method="HEAD")
            self.assertEqual(response.code, 200, path)
            self.assertEqual(response.body, b"")
            self.assertEqual(int(response.headers["Content-Length"]), len(full.body), path)

    def test_json_404_and_405(self):
        self.assert_error("/api/nope", 404, "not found")
        self.assert_error("/nope.html", 404, "not found")
        self.assert_error("/api/status", 405, "method not allowed", method="POST", body=b"{}")
        self.assert_error("/api/health", 405, "method not allowed", method="DELETE")

    def test_dashboard_is_served(self):
        response = self.fetch("/")
        self.assertEqual(response.code, 200)
        self.assertIn("text/html", response.headers["Content-Type"])
        self.assertIn(b"tegrastats-api", response.body)


class TestHealth(APITestCase):
    __test__ = True

    def test_starting(self):
        response, body = self.get_json("/api/health", 503)
        self.assertEqual(set(body), HEALTH_KEYS)
        self.assertEqual(body["status"], "starting")
        self.assertIsNone(body["last_sample_age"])
        self.assertEqual(body["samples"], 0)

    def test_healthy(self):
        self.feed(3)
        self.hub.feed_line("not tegrastats")
        self.clock.advance(0.25)
        _, body = self.get_json("/api/health", 200)
        self.assertEqual(set(body), HEALTH_KEYS)
        expected = {
            "status": "healthy", "service": "tegrastats-api", "connected_clients": 0,
            "max_connections": 10, "source": "replay", "last_sample_age": 0.25,
            "samples": 3, "parse_errors": 1, "restarts": 0, "interval": 1.0, "stale_after": 5.0,
            "version": __version__,
        }
        self.assertEqual({k: body[k] for k in expected}, expected)
        self.assertTrue(body["timestamp"].endswith("Z"))

    def test_degraded_when_stale(self):
        self.feed()
        self.clock.advance(5.5)
        _, body = self.get_json("/api/health", 503)
        self.assertEqual(body["status"], "degraded")
        self.assertEqual(body["last_sample_age"], 5.5)

    def test_degraded_while_restarting(self):
        self.feed()
        self.hub.set_state("restarting")
        _, body = self.get_json("/api/health", 503)
        self.assertEqual((body["status"], body["restarts"]), ("degraded", 1))

    def test_connected_clients(self):
        self.feed()
        self.limiter.acquire("some-sid")
        _, body = self.get_json("/api/health")
        self.assertEqual(body["connected_clients"], 1)


class TestRestrictedCors(APITestCase):
    __test__ = True

    config = Config(host="127.0.0.1", port=0, cors_origins=("http://dash.example",))

    def test_allowed_origin_is_echoed(self):
        self.feed()
        response = self.fetch("/api/status", headers={"Origin": "http://dash.example"})
        self.assertEqual(response.headers["Access-Control-Allow-Origin"], "http://dash.example")
        self.assertIn("Origin", response.headers["Vary"])

    def test_foreign_origin_gets_no_cors_header(self):
        self.feed()
        for path in ["/api/status", "/api/nope"]:
            response = self.fetch(path, headers={"Origin": "http://evil.example"})
            self.assertNotIn("Access-Control-Allow-Origin", response.headers)
            self.assertIn("Origin", response.headers["Vary"])


class TestAuth(APITestCase):
    __test__ = True

    config = Config(host="127.0.0.1", port=0, auth_token="s3cret")

    def test_token_required_on_data_endpoints(self):
        self.feed()
        for path in DATA_PATHS:
            self.assert_error(path, 401, "missing or invalid token")
            self.assert_error(path, 401, headers={"Authorization": "Bearer wrong"})
            self.assert_error(path + "?token=wrong", 401)
            self.assert_error(path, 401, headers={"Authorization": "Basic s3cret"})
            response = self.fetch(path, headers={"Authorization": "Bearer s3cret"})
            self.assertEqual(response.code, 200, path)
            self.assertEqual(self.fetch(path + "?token=s3cret").code, 200, path)

    def test_401_names_the_scheme(self):
        response = self.fetch("/api/status")
        self.assertEqual(response.code, 401)
        self.assertTrue(response.headers["WWW-Authenticate"].startswith("Bearer"))
        self.assertEqual(response.headers["Access-Control-Allow-Origin"], "*")

    def test_health_dashboard_and_preflight_stay_open(self):
        self.feed()
        self.assertEqual(self.fetch("/api/health").code, 200)
        self.assertEqual(self.fetch("/").code, 200)
        self.assertEqual(self.fetch("/api/status", method="OPTIONS").code, 204)

    def test_no_data_yet_only_after_auth(self):
        self.assert_error("/api/status", 401)
        self.assert_error("/api/status?token=s3cret", 503, "no data yet")


def test_default_static_dir_holds_the_dashboard():
    assert os.path.isfile(os.path.join(default_static_dir(), "index.html"))
