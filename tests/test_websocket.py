"""The native WebSocket ``/ws`` over real sockets, with a hub fed real lines."""
from __future__ import annotations

import asyncio
import json
import socket
import time

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
import tornado.testing
from tornado.testing import gen_test
from tornado.websocket import websocket_connect

from conftest import PytestCompatMixin, hub_app_case
from tegrastats_api.config import Config
from tegrastats_api.websocket import SnapshotSocket, text_frame, write_frame

UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
WAIT_S = 5


class WebSocketTestCase(hub_app_case()):
    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        # Close the clients while the loop is still there to send the close frames.
        for conn in self.clients:
            conn.close()
        self.io_loop.run_sync(lambda: asyncio.sleep(0.02))
        super().tearDown()

    def ws_url(self, query=""):
        return "ws://127.0.0.1:%d/ws%s" % (self.get_http_port(), query)

    async def connect(self, query="", **headers):
        request = HTTPRequest(self.ws_url(query), headers=headers, request_timeout=WAIT_S)
        conn = await websocket_connect(request)
        self.clients.append(conn)
        return conn

    async def read(self, conn, deadline=None):
        """The next message; by ``deadline`` (``time.monotonic()``) if given, else in WAIT_S.
        (tornado answers pings itself: read_message returns data or None only.)"""
        timeout = WAIT_S if deadline is None else max(deadline - time.monotonic(), 0.01)
        message = await asyncio.wait_for(conn.read_message(), timeout)
        self.assertIsNotNone(message, "connection closed")
        return message

    def refused(self, status, query="", **headers):
        """A handshake the server refuses before the upgrade: its JSON body."""
        response = self.fetch("/ws" + query, headers=dict(UPGRADE_HEADERS, **headers))
        self.assertEqual(response.code, status, response.body)
        self.assertTrue(response.headers["Content-Type"].startswith("application/json"))
        body = json.loads(response.body)
        self.assertEqual(body["status"], status)
        return body

    async def wait_until(self, condition):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if condition():
                return
            await asyncio.sleep(0.01)
        self.fail("condition not met in %s s" % WAIT_S)


class TestFrames(WebSocketTestCase):
    __test__ = True

    @gen_test(timeout=10)
    async def test_latest_document_at_once_on_connect(self):
        self.feed(2)
        conn = await self.connect()
        self.assertEqual(await self.read(conn), self.hub.latest_json.decode("utf-8"))

    @gen_test(timeout=10)
    async def test_first_sample_after_connect_before_data(self):
        conn = await self.connect()
        await self.wait_until(lambda: self.hub.subscriber_count >= 1)
        self.feed()
        self.assertEqual(json.loads(await self.read(conn)), self.hub.latest_document)

    @gen_test(timeout=10)
    async def test_one_frame_per_sample_in_order(self):
        self.feed()
        conn = await self.connect()
        expected = [await self.read(conn)]
        for index in range(1, 6):
            self.feed(start=index)
            expected.append(self.hub.latest_json.decode("utf-8"))
            await asyncio.sleep(0.02)
        got = [expected[0]] + [await self.read(conn) for _ in range(5)]
        self.assertEqual(got, expected)
        self.assertEqual(len(set(got)), 6)  # six different real lines

    @gen_test(timeout=10)
    async def test_burst_keeps_the_newest_frame(self):
        self.feed()
        conn = await self.connect()
        await self.read(conn)
        for index in range(1, 6):  # no chance to write in between
            self.feed(start=index)
        last = self.hub.latest_json.decode("utf-8")
        got = []
        deadline = time.monotonic() + WAIT_S  # for all the reads, not each
        while (not got or got[-1] != last) and len(got) <= 5:
            got.append(await self.read(conn, deadline))
        self.assertEqual(got[-1], last)
        self.assertLessEqual(len(got), 5)

    @gen_test(timeout=10)
    async def test_close_unsubscribes_and_frees_the_slot(self):
        self.feed()
        conn = await self.connect()
        await self.read(conn)
        self.assertEqual((self.limiter.count, self.hub.subscriber_count), (1, 1))  # Socket.IO: no client
        conn.close()
        await self.wait_until(lambda: self.limiter.count == 0)
        self.assertEqual(self.hub.subscriber_count, 0)

    @gen_test(timeout=10)
    async def test_no_compression_and_ping_configured(self):
        self.feed()
        request = HTTPRequest(self.ws_url(), request_timeout=WAIT_S)
        conn = await websocket_connect(request, compression_options={})
        self.clients.append(conn)
        self.assertIsNone(conn.headers.get("Sec-WebSocket-Extensions"))
        self.assertGreater(self._app.settings["websocket_ping_interval"], 0)

    @gen_test(timeout=10)
    async def test_shutdown_sends_a_close_frame(self):
        self.feed()
        conn = await self.connect()
        await self.read(conn)
        for owner in self.limiter.owners():
            owner.shutdown()
        self.assertIsNone(await asyncio.wait_for(conn.read_message(), WAIT_S))
        self.assertEqual(conn.close_code, 1001)

    def test_plain_get_is_a_json_400(self):
        response = self.fetch("/ws")
        self.assertEqual(response.code, 400)
        self.assertEqual(json.loads(response.body)["status"], 400)


class TestSlowClient(WebSocketTestCase):
    __test__ = True

    @gen_test(timeout=20)
    async def test_slow_client_loses_frames_and_never_blocks_others(self):
        self.feed()
        fast = await self.connect("?who=fast")
        await self.read(fast)
        slow = await self.raw_client_that_never_reads("?who=slow")
        await self.wait_until(lambda: self.limiter.count == 2)
        handler = [h for h in self.limiter.owners() if "slow" in h.request.query][0]
        # A small kernel send buffer on the server's side stands in for a slow link, so
        # that the test does not need megabytes to fill loopback's autotuned buffers.
        handler.ws_connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        received = []

        async def reader():  # until cancelled, or no frame for WAIT_S (wait_until fails then)
            while True:
                received.append(await self.read(fast))

        task = asyncio.ensure_future(reader())
        count = 400
        try:
            for index in range(count):
                self.hub.feed_line(self.lines[index % len(self.lines)])
                await asyncio.sleep(0)
            last = self.hub.latest_json.decode("utf-8")
            await self.wait_until(lambda: received and received[-1] == last)  # WAIT_S in all
        finally:
            task.cancel()
        self.assertIsInstance(handler, SnapshotSocket)
        self.assertGreater(handler.frames_dropped, count // 2)
        self.assertGreater(len(received), count // 2)  # the fast client kept up
        # Server memory for the slow client: at most the frame being written plus the
        # newest one waiting (tornado's private buffer, read only here).
        pending = len(handler.ws_connection.stream._write_buffer)
        self.assertLessEqual(pending, 2 * max(len(frame) for frame in received) + 64)
        slow.close()
        await asyncio.sleep(0)

    async def raw_client_that_never_reads(self, query):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stream = IOStream(sock)
        await stream.connect(("127.0.0.1", self.get_http_port()))
        request = "GET /ws%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (
            query, self.get_http_port(),
            "".join("%s: %s\r\n" % item for item in UPGRADE_HEADERS.items()),
        )
        await stream.write(request.encode("ascii"))
        head = await asyncio.wait_for(stream.read_until(b"\r\n\r\n"), WAIT_S)
        self.assertIn(b" 101 ", head.split(b"\r\n")[0])
        return stream


class TestOriginRestricted(WebSocketTestCase):
    __test__ = True

    config = Config(host="127.0.0.1", port=0, cors_origins=("http://dash.example",))

    def test_foreign_origin_is_refused(self):
        body = self.refused(403, Origin="http://evil.example")
        self.assertEqual(body["error"], "origin not allowed")

    @gen_test(timeout=10)
    async def test_foreign_origin_refused_for_a_websocket_client(self):
        with self.assertRaises(HTTPClientError) as caught:
            await self.connect(Origin="http://evil.example")
        self.assertEqual(caught.exception.code, 403)

    @gen_test(timeout=10)
    async def test_accepted_origins(self):
        self.feed()
        same_host = "http://127.0.0.1:%d" % self.get_http_port()
        for origin in [None, "null", "file://", "file:///home/me/page.html",
                       "http://dash.example", same_host]:
            headers = {} if origin is None else {"Origin": origin}
            conn = await self.connect(**headers)
            self.assertEqual(await self.read(conn), self.hub.latest_json.decode("utf-8"))
            conn.close()


class TestOriginAny(WebSocketTestCase):
    __test__ = True

    @gen_test(timeout=10)
    async def test_any_origin_with_star(self):
        self.feed()
        conn = await self.connect(Origin="http://anywhere.example")
        await self.read(conn)


class TestCap(WebSocketTestCase):
    __test__ = True

    config = Config(host="127.0.0.1", port=0, max_connections=2)

    @gen_test(timeout=10)
    async def test_cap_refuses_with_503_and_keeps_the_others(self):
        self.feed()
        first, second = await self.connect(), await self.connect()
        await self.read(first)
        await self.read(second)
        response = await self.http_client.fetch(
            self.get_url("/ws"), headers=UPGRADE_HEADERS, raise_error=False)
        self.assertEqual(response.code, 503)
        self.assertEqual(json.loads(response.body),
                         {"error": "too many connections (limit 2)", "status": 503})
        self.feed(start=1)
        for conn in (first, second):
            self.assertEqual(await self.read(conn), self.hub.latest_json.decode("utf-8"))
        first.close()
        await self.wait_until(lambda: self.limiter.count == 1)
        third = await self.connect()
        await self.read(third)


class TestAuth(WebSocketTestCase):
    __test__ = True

    config = Config(host="127.0.0.1", port=0, auth_token="s3cret")

    def test_refused_without_or_with_a_wrong_token(self):
        self.assertEqual(self.refused(401)["error"], "missing or invalid token")
        self.refused(401, "?token=nope")
        self.refused(401, Authorization="Bearer nope")
        self.assertEqual(self.limiter.count, 0)

    @gen_test(timeout=10)
    async def test_token_in_header_or_query(self):
        self.feed()
        conn = await self.connect(Authorization="Bearer s3cret")
        await self.read(conn)
        conn = await self.connect("?token=s3cret")
        await self.read(conn)


class TestWriteFrame(PytestCompatMixin, tornado.testing.AsyncTestCase):
    """write_frame over a real socket pair: one send when nothing waits, order kept otherwise."""

    def setUp(self):
        super().setUp()
        ours, self.peer = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.peer.settimeout(WAIT_S)
        self.stream = IOStream(ours)

    def tearDown(self):
        self.stream.close()
        self.peer.close()
        super().tearDown()

    def receive(self, size):
        data = b""
        while len(data) < size:
            chunk = self.peer.recv(65536)
            self.assertTrue(chunk, "peer closed")
            data += chunk
        return data

    @gen_test(timeout=10)
    async def test_an_idle_stream_sends_the_whole_frame_at_once(self):
        frame = text_frame(b'{"a": 1}')
        self.assertIsNone(write_frame(self.stream, frame))  # no Future: the socket took it
        self.assertFalse(self.stream.writing())
        self.assertEqual(self.receive(len(frame)), frame)

    @gen_test(timeout=10)
    async def test_what_the_socket_does_not_take_follows_in_order(self):
        frames = [text_frame(bytes([65 + index]) * 3000) for index in range(40)]  # far over the buffers
        futures = [write_frame(self.stream, frame) for frame in frames]
        self.assertIsNone(futures[0])
        self.assertTrue(self.stream.writing())  # the rest waits in the stream
        # The peer reads a little before the loop runs again: the socket has room now, yet
        # the next frame must go behind the bytes still waiting, not straight past them.
        head = self.peer.recv(8192)
        futures.append(write_frame(self.stream, text_frame(b"last")))
        self.assertIsNotNone(futures[-1])
        expected = b"".join(frames) + text_frame(b"last")
        rest = await IOLoop.current().run_in_executor(None, self.receive, len(expected) - len(head))
        self.assertEqual(head + rest, expected)  # every byte, in order
        await asyncio.wait_for(asyncio.gather(*[f for f in futures if f is not None]), WAIT_S)

    @gen_test(timeout=10)
    async def test_a_closed_stream_raises(self):
        self.stream.close()
        with self.assertRaises(StreamClosedError):
            write_frame(self.stream, text_frame(b"{}"))

    @gen_test(timeout=10)
    async def test_a_broken_connection_closes_the_stream(self):
        self.peer.close()  # a Unix socket whose peer is gone refuses the first send (EPIPE)
        future = write_frame(self.stream, text_frame(b"x" * 100))
        self.assertIsNotNone(future)  # the failed send was left to stream.write
        with self.assertRaises(StreamClosedError):
            await asyncio.wait_for(future, WAIT_S)
        self.assertTrue(self.stream.closed())
        with self.assertRaises(StreamClosedError):
            write_frame(self.stream, text_frame(b"{}"))
