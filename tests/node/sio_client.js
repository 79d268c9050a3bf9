#!/usr/bin/env node
// A real socket.io-client 4.x, driven by tests/test_socketio.py and tests/test_server.py.
//
// usage: node sio_client.js URL [--transports polling,websocket] [--count N]
//                                [--token T] [--auth-only] [--timeout MS] [--expect-upgrade]
//
// Prints one JSON object per line on stdout:
//   {"event": "open", "transport": "polling"}          (Engine.IO connection open)
//   {"event": "connect", "transport": "polling"}       (Socket.IO connected)
//   {"event": "upgrade", "transport": "websocket"}
//   {"event": "tegrastats_update", "transport": "...", "data": {...}}
//   {"event": "connect_error", "message": "...", "reason": "the server's reason"}
// and prints {"event": "ready"} after the first tegrastats_update (so the test can push
// more samples). Exits 0 after N updates (and, with --expect-upgrade, once the transport
// is websocket), 2 on connect_error, 3 on timeout.
"use strict";

const { io } = require("socket.io-client");

function parseArgs(argv) {
  const opts = { url: argv[0], transports: ["polling", "websocket"], count: 1,
                 token: null, timeout: 10000, expectUpgrade: false };
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--transports") opts.transports = argv[++i].split(",");
    else if (arg === "--count") opts.count = parseInt(argv[++i], 10);
    else if (arg === "--token") opts.token = argv[++i];
    else if (arg === "--auth-only") opts.authOnly = true;
    else if (arg === "--timeout") opts.timeout = parseInt(argv[++i], 10);
    else if (arg === "--expect-upgrade") opts.expectUpgrade = true;
    else throw new Error("unknown argument " + arg);
  }
  if (!opts.url) throw new Error("usage: node sio_client.js URL [options]");
  return opts;
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// The server's reason for a refusal: the CONNECT_ERROR's message (the namespace refused
// it), or the JSON error body of a refused Engine.IO handshake (HTTP 401/403/503 over
// polling), which socket.io-client keeps in err.context.
function serverReason(err) {
  const body = err && err.context && err.context.responseText;
  if (body) {
    try {
      return JSON.parse(body).error;
    } catch (e) {
      return body;
    }
  }
  return err.description === undefined ? err.message : null;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const socket = io(opts.url, {
    transports: opts.transports,
    reconnection: false,
    timeout: opts.timeout,
    // The token as docs/API.md says (?token=, checked at the Engine.IO handshake) and in
    // the Socket.IO auth object; --auth-only sends the auth object alone.
    query: opts.token && !opts.authOnly ? { token: opts.token } : undefined,
    auth: opts.token ? { token: opts.token } : undefined,
  });
  let updates = 0;
  const transport = () => socket.io.engine ? socket.io.engine.transport.name : null;
  let finishing = false;
  const finish = (code) => {
    if (finishing) return;
    finishing = true;
    const engine = socket.io.engine;
    const exit = () => process.stdout.write("", () => process.exit(code));
    // Exit once the close packet is out (so the server frees the slot at once, even
    // over polling), or after 500 ms at the latest.
    if (engine && engine.readyState !== "closed") {
      engine.once("close", exit);
      setTimeout(exit, 500);
    } else {
      exit();
    }
    socket.close();
  };
  const maybeDone = () => {
    if (updates >= opts.count && (!opts.expectUpgrade || transport() === "websocket")) {
      finish(0);
    }
  };
  const timer = setTimeout(() => {
    out({ event: "timeout", updates: updates, transport: transport() });
    finish(3);
  }, opts.timeout);
  timer.unref();

  socket.io.on("open", () => {
    // the Engine.IO connection is open (before the Socket.IO connect): watch upgrades
    out({ event: "open", transport: transport() });
    socket.io.engine.on("upgrade", () => {
      out({ event: "upgrade", transport: transport() });
      maybeDone();
    });
  });
  socket.on("connect", () => out({ event: "connect", transport: transport() }));
  socket.on("connect_error", (err) => {
    out({ event: "connect_error", message: err.message, reason: serverReason(err) });
    finish(2);
  });
  socket.on("tegrastats_update", (data) => {
    updates += 1;
    out({ event: "tegrastats_update", transport: transport(), data: data });
    if (updates === 1) out({ event: "ready" });
    maybeDone();
  });
}

main();
