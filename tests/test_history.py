"""``/api/history``: the bounded buffer, ``seconds``, ``fields``, errors and auth.

The hub keeps the newest ``--history-size`` samples; the answer is ``{"samples": [...]}``
oldest first, joined from the bytes each sample was encoded to once (no re-encoding
without ``fields``). Times come from a fake clock, so ``seconds`` is exact.
"""
from __future__ import annotations

import json

import requests
from tornado.testing import gen_test

from conftest import FakeClock, hub_app_case
from tegrastats_api import handlers
from tegrastats_api import hub as hub_module
from tegrastats_api.config import Config
from tegrastats_api.fields import parse_fields, select
from tegrastats_api.hub import SnapshotHub

JSON_TYPE = "application/json; charset=UTF-8"


class HistoryCase(hub_app_case()):
    def history(self, query: str = "", status: int = 200, **kwargs):
        response = self.fetch("/api/history" + query, **kwargs)
        self.assertEqual(response.code, status, response.body)
        self.assertEqual(response.headers["Content-Type"], JSON_TYPE)
        return response, json.loads(response.body)

    def feed_spaced(self, count: int, step_s: float = 1.0):
        """Feed ``count`` lines, ``step_s`` apart on the fake clock (cycling over the lines)."""
        for i in range(count):
            if i:
                self.clock.advance(step_s)
            self.hub.feed_line(self.lines[i % len(self.lines)])


class TestHistory(HistoryCase):
    __test__ = True

    def test_no_data_yet(self):
        _, body = self.history(status=503)
        self.assertEqual(body, {"error": "no data yet", "status": 503})

    def test_every_kept_sample_oldest_first_from_the_pre_encoded_bytes(self):
        self.feed_spaced(4)
        response, body = self.history()
        self.assertEqual(list(body), ["samples"])
        self.assertEqual(body["samples"], [sample.document for sample in self.hub.history])
        stamps = [doc["timestamp"] for doc in body["samples"]]
        self.assertEqual(stamps, sorted(stamps))
        joined = b'{"samples":[' + b",".join(sample.payload for sample in self.hub.history) + b"]}"
        self.assertEqual(response.body, joined)

    def test_seconds(self):
        self.feed_spaced(5)  # read at now-4, now-3, now-2, now-1, now
        for query, count in [("?seconds=0", 1), ("?seconds=1.5", 2), ("?seconds=3", 4), ("?seconds=1e3", 5),
                             ("?seconds=", 5), ("", 5)]:
            _, body = self.history(query)
            self.assertEqual(len(body["samples"]), count, query)
            self.assertEqual(body["samples"], [s.document for s in list(self.hub.history)[5 - count:]], query)
        self.clock.advance(60)
        _, body = self.history("?seconds=10")
        self.assertEqual(body, {"samples": []})  # data exists, none that recent: 200 and empty

    def test_invalid_seconds_is_a_400_naming_it(self):
        self.feed()
        for value in ["abc", "-1", "nan", "inf", "1s", "0x10"]:
            _, body = self.history("?seconds=" + value, status=400)
            self.assertEqual(body["status"], 400)
            self.assertTrue(body["error"].startswith("seconds: "), body)

    def test_fields(self):
        self.feed_spaced(3)
        _, body = self.history("?fields=cpu.usage,power&seconds=10")
        paths = parse_fields("cpu.usage,power")
        self.assertEqual(body["samples"], [select(s.document, paths) for s in self.hub.history])
        self.assertEqual(set(body["samples"][0]), {"timestamp", "cpu", "power"})
        _, body = self.history("?fields=cpu.nope,gpu", status=400)
        self.assertIn("cpu.nope", body["error"])

    def test_fields_through_a_list_merge_element_by_element(self):
        self.feed_spaced(4)
        _, body = self.history("?fields=cpu.cores.usage,cpu.cores.freq,cpu.usage")
        for answer, sample in zip(body["samples"], self.hub.history):
            cores = sample.document["cpu"]["cores"]
            self.assertEqual(answer["cpu"], {"cores": [{"usage": c["usage"], "freq": c["freq"]} for c in cores],
                                             "usage": sample.document["cpu"]["usage"]})
        self.assertEqual(len(body["samples"]), 4)
        for query, same_as in [("?fields=cpu,cpu.cores", "?fields=cpu"), ("?fields=memory,memory", "?fields=memory"),
                               ("?fields=cpu.cores,cpu.cores.usage", "?fields=cpu.cores"),
                               ("?fields=cpu.usage&fields=gpu.usage", "?fields=cpu.usage,gpu.usage")]:
            self.assertEqual(self.history(query)[0].body, self.history(same_as)[0].body, query)

    def test_no_path_at_all_is_every_whole_document(self):
        self.feed_spaced(3)
        whole = self.history()[0].body
        for query in ["?fields=", "?fields=,,,", "?fields=%20,%20", "?fields=,%20,,&seconds=", "?fields=&fields=,"]:
            self.assertEqual(self.history(query)[0].body, whole, query)

    def test_repeated_and_new_samples_answer_from_the_view(self):
        self.feed_spaced(5)
        paths = parse_fields("temperature,power.vdd_in")
        for _ in range(3):
            for query, count in [("", len(self.hub.history)), ("&seconds=1.5", 2), ("&seconds=0", 1)]:
                _, body = self.history("?fields=temperature,power.vdd_in" + query)
                kept = list(self.hub.history)[len(self.hub.history) - count:]
                self.assertEqual(body["samples"], [select(s.document, paths) for s in kept], query)
            self.clock.advance(1)
            self.hub.feed_line(self.lines[2])

    def test_head_and_options(self):
        self.feed()
        self.assertEqual(self.fetch("/api/history", method="HEAD").code, 200)
        head = self.fetch("/api/history?fields=cpu.cores.usage", method="HEAD")
        self.assertEqual(head.code, 200)
        self.assertEqual(int(head.headers["Content-Length"]), len(self.history("?fields=cpu.cores.usage")[0].body))
        self.assertEqual(self.fetch("/api/history", method="OPTIONS").code, 204)


class TestHistoryTakesTurns(HistoryCase):
    """Answers that encode samples do it in steps, a few answers at a time, while the loop
    serves everything else."""

    __test__ = True

    def get_app(self):
        app = super().get_app()
        self.hub.history = type(self.hub.history)(maxlen=200)
        return app

    @gen_test(timeout=30)
    def test_many_distinct_lists_at_once(self):
        self.feed_spaced(200)
        hub = self.hub
        active = {"now": 0, "most": 0}
        real_steps = hub.history_steps

        def watched_steps(seconds=None, paths=None):
            building = False  # resumed after a pause: this answer has its turn to encode
            try:
                for step in real_steps(seconds, paths):
                    yield step
                    if step is None and not building:
                        building = True
                        active["now"] += 1
                        active["most"] = max(active["most"], active["now"])
            finally:
                if building:
                    active["now"] -= 1

        hub.history_steps = watched_steps
        self.addCleanup(setattr, hub_module, "HISTORY_STEP", hub_module.HISTORY_STEP)
        hub_module.HISTORY_STEP = 4  # many pauses
        queries = ["/api/history?fields=cpu.usage,extra.k%d" % index for index in range(12)]
        fetches = [self.http_client.fetch(self.get_url(q)) for q in queries]
        health = [self.http_client.fetch(self.get_url("/api/health"), raise_error=False) for _ in range(5)]
        answers = yield fetches
        for answer in (yield health):
            self.assertIn(answer.code, (200, 503))
            self.assertEqual(json.loads(answer.body)["service"], "tegrastats-api")
        self.assertEqual(active["most"], handlers.HISTORY_BUILDERS)
        self.assertEqual(active["now"], 0)
        for query, answer in zip(queries, answers):
            paths = parse_fields(query.split("=", 1)[1])
            self.assertEqual(json.loads(answer.body)["samples"], [select(s.document, paths) for s in hub.history])
        gate = handlers._history_gates[hub]
        self.assertFalse(gate.locked())


class TestHistoryBound(HistoryCase):
    __test__ = True

    def get_app(self):
        app = super().get_app()
        self.hub.history = type(self.hub.history)(maxlen=3)
        return app

    def test_keeps_only_the_newest(self):
        self.feed_spaced(5)
        _, body = self.history()
        self.assertEqual(len(body["samples"]), 3)
        self.assertEqual(body["samples"][-1], self.hub.latest_document)
        self.assertEqual(body["samples"][0], list(self.hub.history)[0].document)


class TestHistoryAuth(HistoryCase):
    __test__ = True
    config = Config(host="127.0.0.1", port=0, auth_token="s3cret")

    def test_token_required(self):
        self.feed()
        self.history(status=401)
        self.history(headers={"Authorization": "Bearer s3cret"})
        self.history("?token=s3cret&seconds=5")


def test_hub_history_bound_and_cutoff():
    clock = FakeClock()
    hub = SnapshotHub("replay", clock=clock, history_size=2)
    assert hub.history_json() is None
    for _ in range(3):
        hub.feed_line("RAM 1/2MB")
        clock.advance(10)
    assert len(json.loads(hub.history_json())["samples"]) == 2
    assert json.loads(hub.history_json(15.0))["samples"] == [hub.latest_document]
    assert json.loads(hub.history_json(5.0)) == {"samples": []}


def test_history_size_setting_reaches_the_live_server(live_server, transport_lines):
    server = live_server(transport_lines[:1], history_size=2)
    for line in transport_lines[1:4]:
        server.feed(line)
    answer = requests.get(server.url + "/api/history", timeout=5)
    assert answer.status_code == 200
    samples = answer.json()["samples"]
    assert len(samples) == 2 and samples[-1] == requests.get(server.url + "/api/status", timeout=5).json()
