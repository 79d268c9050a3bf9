"""What users hand the server: tokens (how they are compared and kept out of the logs),
the files named by settings, and the address to listen on.

Real servers: in a child process where the log is read (``server_process``), in a thread
(``live_server``), or the command line itself; clients on plain sockets or ``requests``.
Every wait has a deadline; nothing here asserts a duration.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
from urllib.parse import parse_qs, quote, quote_plus

import pytest
import requests
import websocket

from conftest import require_tool
from fault_tools import (
    ROOT_DIR,
    SIO_PATH,
    WAIT_S,
    RawWebSocket,
    deadline_after,
    raw_exchange,
    recv_by,
    terminate,
    wait_until,
)
from tegrastats_api.config import CONFIG_FILE_LIMIT, REPLAY_FILE_LIMIT, Config, ConfigError
from tegrastats_api.tokens import redact_text, redact_token, request_token, token_valid

CLI = [sys.executable, "-m", "tegrastats_api"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
    env["PYTHONPATH"] = ROOT_DIR
    env.update(extra)
    return env


def _status(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def _raw_get(port, target, headers=b"", method=b"GET"):
    """The status of one request whose request line and headers are sent byte for byte."""
    return _status(raw_exchange(port, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers
                                + b"Connection: close\r\n\r\n"))


def _handshake_status(port, target, headers=b""):
    """The status of a WebSocket handshake sent byte for byte (``target`` and ``headers``)."""
    deadline = deadline_after(WAIT_S)
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    try:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n" + headers + b"\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = recv_by(sock, deadline)
            if not chunk:
                break
            head += chunk
        return _status(head)
    finally:
        sock.close()


def _sio_connect(port, query="", auth=None, raw_auth=None):
    """A Socket.IO connect over a raw WebSocket; the server's answer (``40{`` or ``44{``)."""
    deadline = deadline_after(2 * WAIT_S)
    client = RawWebSocket(port, SIO_PATH, query=query)
    try:
        if client.status != 101:
            return "HTTP %d" % client.status
        assert client.text(deadline=deadline).startswith("0{")  # Engine.IO open
        packet = "40" + (raw_auth if raw_auth is not None else "" if auth is None else json.dumps(auth))
        client.send(packet)
        while True:
            answer = client.text(deadline=deadline)
            if answer.startswith("4"):
                return answer
            client.send("3")  # answer Engine.IO pings
    finally:
        client.close()


def _polling_connect(url, query="", headers=None):
    """A Socket.IO connect over Engine.IO polling (headers on every request); the answer."""
    base = url + "/socket.io/?EIO=4&transport=polling" + query
    opened = requests.get(base, headers=headers, timeout=WAIT_S)
    if opened.status_code != 200:
        return "HTTP %d" % opened.status_code
    assert opened.text.startswith("0{"), opened.text[:200]
    sid = json.loads(opened.text[1:])["sid"]
    requests.post(base + "&sid=" + sid, data=b"40", headers=headers, timeout=WAIT_S)
    answer = requests.get(base + "&sid=" + sid, headers=headers, timeout=WAIT_S)
    return answer.text.split("\x1e")[0]


def _refused(answer):
    """A refused Socket.IO connect: ``44{...}`` on connect, or the handshake refused (401)."""
    return answer.startswith("44") or answer == "HTTP 401"


def _bearer(token):
    return b"Authorization: Bearer " + token.encode("utf-8") + b"\r\n"


# --- 3. the token is compared as UTF-8 bytes ------------------------------------------------

# "à" is C3 A0 in UTF-8, which Tornado before 6.3.3 strips from the end of a header value
# (A0 is a Latin-1 space); the key emoji is four bytes; the rest are other scripts.
NON_ASCII_TOKENS = ["voilà-ключ-🔑-Grüße-à", "密码", "naïve café"]


@pytest.mark.parametrize("token", NON_ASCII_TOKENS)
def test_a_non_ascii_token_works_everywhere(live_server, transport_lines, token):
    server = live_server(transport_lines[:1], auth_token=token)
    port, url = server.server.port, server.url
    wrong = token[:-1] + ("b" if token[-1] != "b" else "c")
    encoded = quote(token, safe="").encode("ascii")
    # REST: the header raw (UTF-8), the query percent-encoded, in raw bytes, and with '+'
    assert _raw_get(port, b"/api/status", _bearer(token)) == 200
    assert _raw_get(port, b"/api/status", _bearer(wrong)) == 401
    assert _raw_get(port, b"/api/status", b"Authorization: Bearer " + token.encode("latin-1", "replace")
                    + b"\r\n") == 401, "a Latin-1 spelling is not the UTF-8 token"
    assert requests.get(url + "/api/status", params={"token": token}, timeout=WAIT_S).status_code == 200
    assert requests.get(url + "/api/status", params={"token": wrong}, timeout=WAIT_S).status_code == 401
    assert _raw_get(port, b"/api/status?token=" + encoded) == 200
    assert _raw_get(port, b"/api/status?token=" + token.encode("utf-8").replace(b" ", b"+")) == 200
    assert _raw_get(port, b"/api/status?token=" + quote_plus(token).encode("ascii")) == 200
    # /ws: header and query
    assert _handshake_status(port, b"/ws", _bearer(token)) == 101
    assert _handshake_status(port, b"/ws", _bearer(wrong)) == 401
    assert _handshake_status(port, b"/ws?token=" + encoded) == 101
    # Socket.IO: the query, the header (polling), and the auth object, escaped and raw UTF-8
    # JSON (which wins over the query: a wrong one is refused whatever the query holds)
    query = "&token=" + quote(token, safe="")
    assert _sio_connect(port, query=query).startswith("40{")
    assert _refused(_sio_connect(port, query="&token=" + quote(wrong, safe="")))
    assert _polling_connect(url, headers={"Authorization": b"Bearer " + token.encode("utf-8")}).startswith("40{")
    assert _polling_connect(url, query).startswith("40{")
    assert _refused(_polling_connect(url, headers={"Authorization": b"Bearer " + wrong.encode("utf-8")}))
    assert _sio_connect(port, query=query, auth={"token": token}).startswith("40{")
    assert _sio_connect(port, query=query, raw_auth=json.dumps({"token": token}, ensure_ascii=False)).startswith("40{")
    assert _sio_connect(port, query=query, auth={"token": wrong}).startswith("44")


@pytest.mark.parametrize("raw_auth", ['{"token": "\\ud800"}', '{"token": "\\udfff\\ud800"}',
                                      '{"token": "voil\\udce0"}', '{"token": "voil\\u00e0\\ud800"}'])
def test_an_auth_token_without_utf8_form_is_a_refusal(live_server, transport_lines, raw_auth):
    """A lone surrogate (valid JSON, no UTF-8 form) in the auth object is refused, however
    good the query's token: the auth object is what counts, and comparing it cannot fail."""
    server = live_server(transport_lines[:1], auth_token="voilà")
    port, query = server.server.port, "&token=voil%C3%A0"
    assert _sio_connect(port, query=query, raw_auth=raw_auth).startswith("44")
    assert _sio_connect(port, query=query, auth={"token": "voilà"}).startswith("40{"), "the server still serves"
    wait_until(lambda: server.limiter.count == 0, what="every refused client's slot released")


@pytest.mark.parametrize("raw_auth", ['{"token": ["x"]}', '{"token": {"a": 1}}', '{"token": null}',
                                      '{"token": 1e999}', '["token"]', '"token"', "7", '{"token": "\\ud800"}'])
def test_odd_auth_objects_without_a_token_elsewhere_are_refused(live_server, transport_lines, raw_auth):
    server = live_server(transport_lines[:1], auth_token="voilà")
    port = server.server.port
    assert _refused(_sio_connect(port, raw_auth=raw_auth))
    assert _sio_connect(port, query="&token=voil%C3%A0").startswith("40{"), "the server still serves"
    wait_until(lambda: server.limiter.count == 0, what="every refused client's slot released")


GIVEN = [None, "", b"", "voilà", "voilà".encode(), bytearray("voilà".encode()),
         "voilà".encode("latin-1"), "\ud800", "voil\udce0", "a\x00b", 0, 1, 1.5, True, [], {}, ("v",),
         object(), memoryview(b"voil"), "voilà" * 10_000]


@pytest.mark.parametrize("expected", [None, "", "voilà", "tok-ASCII"])
@pytest.mark.parametrize("given", GIVEN, ids=[type(g).__name__ + str(i) for i, g in enumerate(GIVEN)])
def test_token_valid_is_total(expected, given):
    result = token_valid(expected, given)
    assert isinstance(result, bool)
    if not expected:
        assert result is True
    else:
        assert result == (given in (expected, expected.encode("utf-8")) or
                          isinstance(given, bytearray) and bytes(given) == expected.encode("utf-8"))


def test_a_token_that_is_not_utf8_is_a_bad_setting():
    with pytest.raises(ConfigError, match="--auth-token"):
        Config(auth_token="abc\udcff")  # what Python makes of bytes that are not UTF-8 in argv
    result = subprocess.run(CLI + ["--config", os.devnull, "run", "--simulate", "--auth-token", "abc\udcff"],
                            env=_env(), capture_output=True, text=True, errors="replace", timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--auth-token" in result.stderr and "Traceback" not in result.stderr


# --- 2. what the server accepts as the token is what it masks ---------------------------------

def _spellings(text):
    """``text`` with each character raw, ``%xx`` or ``%XX``: every spelling parse_qs decodes to it."""
    forms = [(c, "%%%02x" % ord(c), "%%%02X" % ord(c)) for c in text]
    return ["".join(chars) for chars in itertools.product(*forms)]


KEY_SPELLINGS = _spellings("token")  # 243 spellings, all of them the key ``token``
QUERY_SHAPES = ["{k}={v}", "x=1&{k}={v}&y=2", "{k}=&{k}={v}", "{k}={v}&{k}=other", "{k}=other&{k}={v}",
                "a=b;{k}={v}", "{k}={v};x=1", "{k}={v}#frag", "{k}={v}&&", "&{k}={v}", ";{k}={v}"]


@pytest.mark.parametrize("token", ["tok-3f9a1c-SECRET", "voilà ключ+&=;%#?/-SECRET"])
def test_every_query_the_server_takes_the_token_from_is_masked(token):
    """The decode-based mask against parse_qs itself, over every spelling of the key and of
    the value: whenever the server would take a token from a query, the logged form holds none
    of it, and a key that only looks like ``token`` (any case) is masked as well."""
    values = [quote(token, safe=""), quote_plus(token), "".join("%%%02x" % b for b in token.encode("utf-8"))]
    checked = 0
    for key, value, shape in itertools.product(KEY_SPELLINGS + ["TOKEN", "Token", "%54oken", "tOkEn"],
                                                values, QUERY_SHAPES):
        query = shape.format(k=key, v=value)
        logged = redact_token("/api/status?" + query)
        given = request_token(None, query)
        accepted = parse_qs(query).get("token", [None])[0]
        assert (given.decode("utf-8") if given is not None else None) == accepted, query
        for form in {token, value, value.lower(), quote(token), token.split("-")[-1]}:
            assert form not in logged, (query, logged)
        checked += accepted == token
    assert checked > 1000, "the corpus holds queries the server accepts"


@pytest.mark.parametrize("text", [
    "403 GET /..%2f..%2fetc?to%6Ben=SECRET (127.0.0.1): not in root",
    "HTTPServerRequest(protocol='http', method='GET', uri='/x?a=1&TOKEN=SECRET', version='HTTP/1.1')",
    "{'HTTP_AUTHORIZATION': 'Bearer SECRET', 'QUERY_STRING': 'EIO=4&token=SECRET'}",
    "Authorization: Basic SECRET", 'received packet 0 data {"token":"SECRET"}', "42[\"x\",{'token': 'SECRET'}]",
    "bearer   SECRET,", "EIO=4&transport=polling&%74oken=SECRET",
])
def test_free_log_text_is_masked(text):
    assert "SECRET" not in redact_text(text)


LOG_TOKEN = "Zq7k SECRET voilà+ключ"  # a space, a '+' and two scripts: every encoding matters


def _values(token):
    """The token's value as clients spell it in a query: percent-encoded (upper and lower
    case hex), with ``+`` for spaces, and in raw UTF-8 bytes (as Latin-1 text, the way
    Tornado reads a request line)."""
    utf8 = token.encode("utf-8")
    return [quote(token, safe=""), quote_plus(token), "".join("%%%02x" % b for b in utf8),
            utf8.replace(b"+", b"%2B").replace(b" ", b"+").decode("latin-1")]


def _queries(token):
    """Every query a test request carries: the key and the value spelled every way a client
    might, alone or among other parameters, repeated, after ``;``. As Latin-1 text: what
    Tornado hands the server, and what parse_qs reads."""
    plain, plus, low, raw = _values(token)
    return ["token=" + plain, "token=" + plus, "token=" + low, "token=" + raw, "to%6Ben=" + plain,
            "%74%6F%6B%65%6E=" + plus, "%74%6f%6B%65%6e=" + raw, "TOKEN=" + plain, "Token=" + plus,
            "tok%45n=" + plain, "x=1&token=%s&y=2" % plain, "token=&token=" + low, "token=%s&token=wrong" % plain,
            "token=wrong&token=" + plain, "a=b;token=" + plain, "token=%s;x=1" % plain]


def _accepted(query, token):
    """Whether the server takes ``token`` from ``query``: what parse_qs reads, as bytes."""
    value = parse_qs(query, encoding="latin-1").get("token", [None])[0]
    return value is not None and value.encode("latin-1") == token.encode("utf-8")


@pytest.mark.parametrize("level", [["--debug"], ["--log-level", "DEBUG"], []], ids=["debug", "DEBUG", "INFO"])
def test_no_spelling_of_the_token_reaches_the_log(server_process, level):
    server = server_process("--simulate", "--auth-token", LOG_TOKEN, *level)
    wait_until(lambda: server.get("/api/health").status_code == 200)
    port, accepted = server.port, 0
    for query in _queries(LOG_TOKEN):
        sent, ok = query.encode("latin-1"), _accepted(query, LOG_TOKEN)
        accepted += ok
        # the controls: the server takes the token from exactly these spellings
        assert _raw_get(port, b"/api/status?" + sent) == (200 if ok else 401), query
        assert _handshake_status(port, b"/ws?" + sent) == (101 if ok else 401), query
        if query.isascii():
            answer = _sio_connect(port, query="&" + query)
            assert answer.startswith("40{") if ok else _refused(answer), (query, answer)
        for target in (b"/socket.io/?EIO=4&transport=polling&", b"/index.html?", b"/api/nope?",
                       b"/..%2f..%2fetc%2fpasswd?", b"/api/health?"):
            _raw_get(port, target + sent)
        _raw_get(port, b"/api/status?" + sent, method=b"POST")  # 405
    assert accepted >= 8, "most spellings are the token"
    for target in (b"/api/status", b"/api/nope", b"/..%2f..%2fetc%2fpasswd", b"/socket.io/?EIO=4&transport=polling"):
        _raw_get(port, target, _bearer(LOG_TOKEN))
    assert _raw_get(port, b"/api/status", _bearer(LOG_TOKEN)) == 200
    assert _handshake_status(port, b"/ws", _bearer(LOG_TOKEN)) == 101
    assert server.stop() == 0
    log = server.log()
    if level:
        assert "GET /api/status?token=*** " in log, "the access log was not on: nothing was checked"
    assert re.search(r"WARNING tornado\.general: 403 GET /\S+token=\*\*\*", log), \
        "tornado's own warning for a refused static path (it prints the URI) was not checked"
    for value in _values(LOG_TOKEN):
        assert value not in log and value.encode("latin-1").decode("utf-8", "replace") not in log, value
    for piece in ("Zq7k", "SECRET", "voil", "ключ", "%D0%BA", "%d0%ba", "Bearer"):
        assert piece not in log, piece


# --- 14. files named by settings: regular files only, with a size limit -----------------------


def _sparse(path, size):
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def _special_files(tmp_path):
    """name -> path of a file no setting may name: devices, a FIFO, a directory, a socket,
    and sparse files one byte over each limit (no disk used)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    directory = tmp_path / "a-directory"
    directory.mkdir()
    sock_path = str(tmp_path / "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    return {
        "dev-zero": "/dev/zero", "dev-urandom": "/dev/urandom", "fifo": str(fifo), "directory": str(directory),
        "socket": sock_path,
        "big-config": _sparse(tmp_path / "big.conf", CONFIG_FILE_LIMIT + 1),
        "big-replay": _sparse(tmp_path / "big.txt", REPLAY_FILE_LIMIT + 1),
    }, listener


SPECIAL = ["dev-zero", "dev-urandom", "fifo", "directory", "socket"]


def _ways(setting, path, tmp_path):
    """``(argv, env)`` naming ``path`` for ``setting`` by flag, env var and the config file."""
    flag, env = "--" + setting, "TEGRASTATS_API_" + setting.upper()
    ways = [([flag, path, "run"], {}), (["run", flag, path], {}), (["run"], {env: path})]
    if setting == "replay":
        conf = tmp_path / "replay.conf"
        conf.write_text("replay = %s\n" % path)
        ways.append((["--config", str(conf), "run"], {}))
        ways = [(["--config", os.devnull] + argv if "--config" not in argv else argv, extra) for argv, extra in ways]
    return ways


@pytest.mark.parametrize("setting", ["config", "replay"])
@pytest.mark.parametrize("kind", SPECIAL + ["big"])
def test_a_setting_naming_a_special_or_huge_file_is_one_line(tmp_path, setting, kind):
    files, listener = _special_files(tmp_path)
    path = files["big-" + setting] if kind == "big" else files[kind]
    try:
        for argv, extra in _ways(setting, path, tmp_path):
            argv = argv + ["--host", "127.0.0.1", "--port", "0", "--update-interval", "0.05"]
            result = subprocess.run(CLI + argv, env=_env(**extra), capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)  # a blocking read would time out
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2, (argv, extra, result.stderr)
            # named as given: the flag, the variable, or the key of the config file
            flag = "--" + setting
            label = next(iter(extra), None) or (flag if flag in argv else setting + " in config file")
            assert len(lines) == 1 and lines[0].startswith("tegrastats-api: error: " + label), result.stderr
            assert path in lines[0] and "Traceback" not in result.stderr
            assert ("limit" in lines[0]) if kind == "big" else ("not a regular file" in lines[0]), lines[0]
    finally:
        listener.close()


def test_a_config_on_stdin_that_is_a_pipe_is_refused_without_blocking():
    proc = subprocess.Popen(CLI + ["--config", "/dev/stdin", "config"], env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=60)  # stdin is never written to nor closed before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2 and "a FIFO, not a regular file" in stderr and stderr.count("\n") == 1, stderr


def test_files_up_to_the_limit_are_read(tmp_path, monkeypatch):
    import tegrastats_api.plan as plan

    conf = tmp_path / "full.conf"
    body = "port = 8123\n"
    conf.write_text(body + "#" * (CONFIG_FILE_LIMIT - len(body) - 1) + "\n")
    assert os.path.getsize(str(conf)) == CONFIG_FILE_LIMIT
    result = subprocess.run(CLI + ["--config", str(conf), "config"], env=_env(), capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "port = 8123  (file %s)" % conf in result.stdout, result.stderr
    assert subprocess.run(CLI + ["--config", os.devnull, "config"], env=_env(), capture_output=True,
                          timeout=60).returncode == 0, "/dev/null is the empty config file"
    line = "RAM 2358/62841MB (lfb 14809x4MB) SWAP 0/31421MB (cached 0MB) CPU [6%@729,3%@729]\n"
    replay = tmp_path / "lines.txt"
    replay.write_text(line * 10)
    monkeypatch.setattr(plan, "REPLAY_FILE_LIMIT", len(line) * 10)
    assert len(plan.load_replay(str(replay))) == 10
    monkeypatch.setattr(plan, "REPLAY_FILE_LIMIT", len(line) * 10 - 1)
    with pytest.raises(ValueError, match="limit"):
        plan.load_replay(str(replay))


def _within(seconds, func, *args):
    """``func(*args)`` in a thread: its result or exception, or AssertionError if it blocks."""
    outcome = {}

    def call():
        try:
            outcome["value"] = func(*args)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "%s blocked" % func.__name__
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize("kind", SPECIAL + ["big-replay"])
def test_the_library_refuses_special_replay_files_too(tmp_path, kind):
    from tegrastats_api import TegrastatsServer
    from tegrastats_api.plan import load_replay

    files, listener = _special_files(tmp_path)
    try:
        with pytest.raises(ValueError, match="not a regular file|limit"):
            _within(WAIT_S, load_replay, files[kind])
        server = TegrastatsServer(Config(host="127.0.0.1", port=0, replay=files[kind]))
        with pytest.raises(ConfigError, match="--replay"):
            _within(WAIT_S, server.start)
    finally:
        listener.close()


# --- 15. --host :: serves IPv4 and IPv6 -------------------------------------------------------


def _has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def ipv6():
    require_tool(_has_ipv6_loopback(), "an IPv6 loopback (::1)")


def _answers(url):
    try:
        return requests.get(url + "/api/status", timeout=WAIT_S).status_code
    except requests.ConnectionError:
        return None


@pytest.mark.parametrize("host", ["::", "0:0:0:0:0:0:0:0", "::0"])
def test_the_ipv6_wildcard_serves_ipv4_clients_too(ipv6, live_server, transport_lines, host):
    server = live_server(transport_lines[:1], host=host)
    port = server.server.port
    assert sorted(server.server.addresses) == sorted(["0.0.0.0:%d" % port, "[::]:%d" % port])
    assert _answers("http://127.0.0.1:%d" % port) == 200
    assert _answers("http://[::1]:%d" % port) == 200
    ws = RawWebSocket(port, "/ws")  # an ESP32: IPv4
    try:
        assert ws.status == 101 and json.loads(ws.text())["schema"] == 1
    finally:
        ws.close()
    assert _sio_connect(port).startswith("40{")
    client = websocket.create_connection("ws://[::1]:%d/ws" % port, timeout=WAIT_S)
    try:
        assert json.loads(client.recv())["schema"] == 1
    finally:
        client.close()


@pytest.mark.parametrize("host, v4, v6", [("127.0.0.1", True, False), ("::1", False, True),
                                          ("0.0.0.0", True, False)])
def test_explicit_hosts_are_bound_as_given(ipv6, live_server, transport_lines, host, v4, v6):
    server = live_server(transport_lines[:1], host=host)
    port = server.server.port
    assert (_answers("http://127.0.0.1:%d" % port) == 200) is v4
    assert (_answers("http://[::1]:%d" % port) == 200) is v6
    assert len(server.server.addresses) == 1


def test_the_start_line_names_every_address(ipv6):
    proc = subprocess.Popen(CLI + ["--config", os.devnull, "run", "--host", "::", "--port", "0", "--simulate",
                                   "--log-level", "INFO"], env=_env(), stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    lines = []
    try:
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        reader.start()
        pattern = re.compile(r"serving on http://\[::1\]:(\d+) .*\(source: simulator[^;]*; listening on (.+)\)$")
        match = wait_until(lambda: next(filter(None, (pattern.search(line.strip()) for line in list(lines))), None),
                           what="the serving-on line")
        port = int(match.group(1))
        assert sorted(match.group(2).split(" and ")) == sorted(["0.0.0.0:%d" % port, "[::]:%d" % port])
        assert _answers("http://127.0.0.1:%d" % port) == 200 and _answers("http://[::1]:%d" % port) == 200
    finally:
        terminate(proc)
    assert proc.returncode == 0


def test_a_busy_port_on_the_wildcard_is_one_line(ipv6):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(CLI + ["--config", os.devnull, "run", "--host", "::", "--port", str(port),
                                       "--simulate"], env=_env(), capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert "--port" in errors[0] and "[::]:%d" % port in errors[0] and "Traceback" not in result.stderr
