"""What a client can make the server log is bounded (tegrastats_api/logbudget.py).

Unit tests of :class:`LogBudget` on a settable clock, and a real server in a child process
that clients flood with requests each of which logs a line: malformed Socket.IO packets
(python-engineio logs an ERROR with a traceback for each), refused requests (Tornado's
access log warns of each 4xx) and malformed HTTP requests (``tornado.general``).
"""
from __future__ import annotations

import logging
import re
import socket

import requests

from fault_tools import WAIT_S, sio_client, wait_until
from tegrastats_api.logbudget import LogBudget, install_log_budget

TOKEN = "tok-budget-5be1"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append((record.name, record.levelname, record.getMessage()))


def _logger(name, budget):
    logger = logging.getLogger(name)
    logger.filters = []
    logger.handlers = []
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    collect = Collect()
    logger.addHandler(collect)
    install_log_budget((name,), budget)
    return logger, collect


def test_a_budget_lets_a_burst_through_then_says_so_and_counts_what_it_dropped():
    clock = Clock()
    budget = LogBudget(burst=3, window_s=10.0, clock=clock)
    logger, seen = _logger("test.budget.a", budget)
    for index in range(50):
        logger.warning("request %d refused", index)
    messages = [message for _name, _level, message in seen.messages]
    assert messages[:3] == ["request 0 refused", "request 1 refused", "request 2 refused"]
    assert len(messages) == 4 and "log budget spent" in messages[3], messages
    clock.now += 10.0  # a new window: the count of the dropped comes with the next record
    logger.warning("request 50 refused")
    assert seen.messages[4][2].startswith("47 WARNING messages of test.budget.a were dropped")
    assert seen.messages[4][1] == "WARNING"
    assert seen.messages[5][2] == "request 50 refused"


def test_only_the_first_records_of_a_window_keep_their_traceback():
    budget = LogBudget(burst=10, window_s=10.0, clock=Clock(), tracebacks=2)
    logger, _seen = _logger("test.budget.tb", budget)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.exc_info, record.getMessage()))

    logger.addHandler(Keep())
    for index in range(5):
        try:
            raise ValueError("bad packet %d (100%% garbage)" % index)
        except ValueError:
            logger.exception("packet %s refused", index)
    assert [exc is not None for exc, _message in records] == [True, True, False, False, False]
    assert records[2][1] == ("packet 2 refused (ValueError: bad packet 2 (100% garbage); "
                             "traceback left out by the log budget)")


def test_each_level_and_logger_has_its_own_budget():
    clock = Clock()
    budget = LogBudget(burst=2, window_s=10.0, clock=clock)
    one, seen_one = _logger("test.budget.one", budget)
    two, seen_two = _logger("test.budget.two", budget)
    for _ in range(10):
        one.warning("w")
        one.error("e")
        two.warning("w")
    assert [m for _n, lvl, m in seen_one.messages if lvl == "ERROR"][:2] == ["e", "e"]
    assert sum(1 for _n, _l, m in seen_one.messages if m == "w") == 2
    assert sum(1 for _n, _l, m in seen_two.messages if m == "w") == 2


def test_debug_and_info_lines_are_not_budgeted():
    budget = LogBudget(burst=2, window_s=10.0, clock=Clock())
    logger, seen = _logger("test.budget.info", budget)
    for _ in range(10):
        logger.info("i")
        logger.debug("d")
    assert len(seen.messages) == 20


def test_installing_again_puts_the_new_budget_in_place_of_the_old():
    logger = logging.getLogger("test.budget.twice")
    logger.filters = [logging.Filter("x")]
    first, second = LogBudget(), LogBudget()
    install_log_budget(("test.budget.twice",), first)
    install_log_budget(("test.budget.twice",), second)
    assert logger.filters[0] is second
    assert sum(isinstance(f, LogBudget) for f in logger.filters) == 1


MALFORMED_SIO = ["42[", "4{", "49", "7", "41", "451-[\"x\",{\"_placeholder\":true,\"num\":5}]", "4\x00\x00"]


def test_a_flood_of_client_errors_does_not_flood_the_log(server_process):
    server = server_process("--simulate", "--auth-token", TOKEN)
    wait_until(lambda: server.health()["samples"] > 0, what="a first sample")
    before = server.log()
    for index in range(200):  # each an ERROR with a traceback from python-engineio
        client = sio_client(server.port, query="&token=" + TOKEN)
        try:
            client.send(MALFORMED_SIO[index % len(MALFORMED_SIO)])
        finally:
            client.close(clean=False)
    with requests.Session() as session:
        for _ in range(300):  # each a WARNING of tornado.access
            assert session.get(server.url + "/api/status?token=wrong", timeout=WAIT_S).status_code == 401
    for _ in range(100):  # each a WARNING of tornado.general ("Malformed HTTP message")
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
            sock.recv(1024)
    wait_until(lambda: "log budget spent" in server.log()[len(before):], what="the budget notice")
    log = server.log()[len(before):]
    assert log.count("Traceback (most recent call last)") <= 2, log[-3000:]
    assert len(log.splitlines()) < 200, "%d log lines for 600 bad requests" % len(log.splitlines())
    for logger in ("engineio.server", "tornado.access"):
        assert re.search(r"log budget spent: further \w+ messages of %s" % re.escape(logger), log), logger
    # python-engineio's own StreamHandler is not there: no error is printed twice, bare.
    bare = [line for line in log.splitlines() if line.startswith("message async handler error")]
    assert not bare, bare[:3]
    # The server is fine and other clients are served.
    assert server.get("/api/status", headers={"Authorization": "Bearer " + TOKEN}).status_code == 200
