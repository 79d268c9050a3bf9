#!/usr/bin/env node
// Drives the dashboard in a real headless Chromium (Debian's /usr/bin/chromium, never a
// downloaded browser) through playwright-core, for tests/test_dashboard.py.
//
// usage: node dashboard_driver.js [--chromium PATH]
//
// Reads one JSON command per line on stdin and answers one JSON line on stdout:
//   {"id": 1, "cmd": "open", "page": "p", "url": "...", "width": 1280, "height": 800,
//    "colorScheme": "light", "reuse": false}     -> {"id": 1, "ok": true, "status": 200}
//      (reuse: navigate an open page of that name instead of making a new one;
//       clockSkewMs: the page's Date.now() runs that many ms off this machine's clock)
//   {"cmd": "wait_state", "page": "p", "state": "live", "timeout": 5000}
//                                                -> {"ok": true, "state": "live", "text": "live"}
//   {"cmd": "read", "page": "p"}                 -> {"ok": true, "state", "text", "age", "staleAfter",
//                                                    "judgedAt", "clockError", "badge", "tempMax",
//                                                    "charts", "yRanges", "bars", "rails",
//                                                    "board": {model, line, value, title},
//                                                    "fields": [[path, rawJSON, text, unit], ...]}
//   {"cmd": "wait_change", "page": "p", "from": "<timestamp JSON>", "timeout": 5000}
//   {"cmd": "layout", "page": "p"}               -> {"ok": true, "scrollWidth", "clientWidth", "overflowing": [...],
//                                                    "background"}
//   {"cmd": "media", "page": "p", "colorScheme": "dark"}   (switch prefers-color-scheme)
//   {"cmd": "screenshot", "page": "p", "path": "...png", "fullPage": true, "scrollY": 0}
//   {"cmd": "log", "page": "p"}                  -> {"ok": true, "console": [...], "errors": [...], "requests": [...]}
//   {"cmd": "close", "page": "p"}, {"cmd": "quit"}
// Failures answer {"id": ..., "ok": false, "error": "..."}; every wait is bounded. Commands
// run concurrently, so answers may come in another order than the commands (match the ids).
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function executable(argv) {
  const i = argv.indexOf("--chromium");
  return i >= 0 ? argv[i + 1] : "/usr/bin/chromium";
}

const pages = new Map();   // name -> {context, page, console, errors, requests}
let browser = null;

async function open(cmd) {
  const known = pages.get(cmd.page);
  if (known && cmd.reuse) {  // navigate the same page (no new browser context): faster
    Object.assign(known, { console: [], errors: [], requests: [] });
    const response = await known.page.goto(cmd.url, { waitUntil: "load", timeout: cmd.timeout || 10000 });
    return { status: response ? response.status() : null };
  }
  if (known) await close(cmd);
  const context = await browser.newContext({
    viewport: { width: cmd.width || 1280, height: cmd.height || 800 },
    deviceScaleFactor: cmd.scale || 1,
    colorScheme: cmd.colorScheme || "light",
    isMobile: Boolean(cmd.mobile),
    hasTouch: Boolean(cmd.mobile),
    serviceWorkers: "block",
  });
  if (cmd.clockSkewMs) {
    await context.addInitScript((skew) => {
      const now = Date.now.bind(Date);
      Date.now = () => now() + skew;
    }, cmd.clockSkewMs);
  }
  const page = await context.newPage();
  const entry = { context, page, console: [], errors: [], requests: [] };
  page.on("console", (msg) => entry.console.push({ type: msg.type(), text: msg.text(), url: msg.location().url || "" }));
  page.on("pageerror", (err) => entry.errors.push(String(err && err.stack || err)));
  page.on("request", (req) => entry.requests.push(req.url()));
  page.on("websocket", (ws) => entry.requests.push(ws.url()));
  pages.set(cmd.page, entry);
  const response = await page.goto(cmd.url, { waitUntil: "load", timeout: cmd.timeout || 10000 });
  return { status: response ? response.status() : null };
}

function entryOf(cmd) {
  const entry = pages.get(cmd.page);
  if (!entry) throw new Error("no page " + cmd.page);
  return entry;
}

function readPage() {
  const conn = document.getElementById("connection");
  const badge = document.getElementById("source-badge");
  const number = (text) => (text === undefined || text === "" ? null : Number(text));
  return {
    state: conn.dataset.state,
    text: conn.textContent,
    // the staleness verdict's inputs: age and limit (s), when judged (server epoch ms), +- ms
    age: number(conn.dataset.age),
    staleAfter: number(conn.dataset.staleAfter),
    judgedAt: number(conn.dataset.judgedAt),
    clockError: number(conn.dataset.clockError),
    badge: { hidden: badge.hidden, text: badge.textContent },
    tempMax: document.querySelector("[data-testid=temp-max]").dataset.value || null,
    charts: document.querySelectorAll(".chart .plot canvas").length,
    board: { model: document.getElementById("board-model").textContent,
      line: document.getElementById("board-line").hidden ? null : document.getElementById("board-line").textContent,
      value: document.getElementById("board-line").dataset.value || null, title: document.title },
    // The drawn y range of each chart ({id: [min, max]}), and every bar's inline width.
    yRanges: Object.fromEntries(Array.from(document.querySelectorAll(".chart"))
      .map((fig) => [fig.id, fig.dataset.yRange ? JSON.parse(fig.dataset.yRange) : null])),
    bars: Array.from(document.querySelectorAll(".meter i, .core .fill")).map((bar) => bar.style.width || bar.style.height || ""),
    rails: Array.from(document.querySelectorAll("#rails .rail")).map((row) =>
      [row.dataset.key, row.classList.contains("below-zero"), row.querySelector(".meter i").style.width]),
    fields: Array.from(document.querySelectorAll("[data-field]"))
      .map((node) => [node.dataset.field, node.dataset.value === undefined ? null : node.dataset.value,
        node.textContent, node.dataset.unit || ""]),
  };
}

async function waitState(cmd) {
  const { page } = entryOf(cmd);
  await page.waitForFunction((want) => document.getElementById("connection").dataset.state === want,
    cmd.state, { timeout: cmd.timeout || 5000, polling: 50 });
  return page.evaluate(readPage);
}

async function waitChange(cmd) {
  const { page } = entryOf(cmd);
  await page.waitForFunction((from) => {
    const node = document.querySelector("footer [data-field=timestamp]");
    return node && node.dataset.value !== undefined && node.dataset.value !== from;
  }, cmd.from, { timeout: cmd.timeout || 5000, polling: 20 });
  return page.evaluate(readPage);
}

async function layout(cmd) {
  const { page } = entryOf(cmd);
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const overflowing = [];
    for (const node of document.querySelectorAll("body *")) {
      const rect = node.getBoundingClientRect();
      if (rect.width && (rect.right > width + 1 || rect.left < -1)) {
        overflowing.push((node.id ? "#" + node.id : node.tagName.toLowerCase()) + "." + node.className + " " + Math.round(rect.right));
      }
    }
    return { scrollWidth: document.documentElement.scrollWidth, clientWidth: width,
      bodyScrollWidth: document.body.scrollWidth, overflowing: overflowing.slice(0, 20),
      background: getComputedStyle(document.body).backgroundColor };
  });
}

async function screenshot(cmd) {
  const { page } = entryOf(cmd);
  if (cmd.scrollY !== undefined) await page.evaluate((y) => window.scrollTo(0, y), cmd.scrollY);
  await page.screenshot({ path: cmd.path, fullPage: cmd.fullPage !== false, timeout: cmd.timeout || 10000 });
  return { path: cmd.path };
}

async function media(cmd) {
  const { page } = entryOf(cmd);
  await page.emulateMedia({ colorScheme: cmd.colorScheme });
  return {};
}

async function close(cmd) {
  const entry = pages.get(cmd.page);
  if (entry) {
    pages.delete(cmd.page);
    await entry.context.close();
  }
  return {};
}

const COMMANDS = {
  open,
  wait_state: waitState,
  wait_change: waitChange,
  read: async (cmd) => entryOf(cmd).page.evaluate(readPage),
  layout,
  media,
  screenshot,
  log: async (cmd) => {
    const { console: messages, errors, requests } = entryOf(cmd);
    return { console: messages, errors, requests };
  },
  close,
};

function reply(answer) {
  process.stdout.write(JSON.stringify(answer) + "\n");
}

async function run(cmd) {
  try {
    const handler = COMMANDS[cmd.cmd];
    if (!handler) throw new Error("unknown command " + cmd.cmd);
    return Object.assign({ id: cmd.id, ok: true }, await handler(cmd));
  } catch (err) {
    return { id: cmd.id, ok: false, error: String(err && err.message || err) };
  }
}

async function main() {
  browser = await chromium.launch({ executablePath: executable(process.argv), args: ARGS, timeout: 20000 });
  process.stdout.write(JSON.stringify({ ready: true, version: browser.version() }) + "\n");
  const lines = readline.createInterface({ input: process.stdin });
  const pending = new Set();
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd = {};
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      reply({ ok: false, error: "bad JSON: " + line });
      continue;
    }
    if (cmd.cmd === "quit") break;
    // Commands run concurrently (answers carry the command's id): pages load in parallel.
    const done = run(cmd).then(reply);
    pending.add(done);
    done.finally(() => pending.delete(done));
  }
  await Promise.allSettled(Array.from(pending));
  await browser.close();
  process.exit(0);  // stdin may still be open: do not wait for it
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + "\n");
  process.exit(1);
});
