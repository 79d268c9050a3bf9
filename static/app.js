/* tegrastats-api dashboard: live Jetson figures over Socket.IO, rolling charts with uPlot.
 *
 * Subscribes to `tegrastats_update` (the schema-1 document, docs/API.md) and renders every
 * field the document carries, whatever the board: rows for sensors, rails, engines and
 * cores are created from the keys present. null means "not printed" and shows as "—"
 * ("off" for a powered-off sensor or core). Elements with `data-field="a.b.c"` show that
 * path of the latest document and keep its raw value in `data-value` (JSON), so the
 * numbers can be read back exactly. No framework, no build step, nothing from a CDN.
 */
(function () {
  "use strict";

  const WINDOW_S = 300;                   // rolling charts: the last 5 minutes
  const MIN_VIEW_S = 60;                  // ...shown at least one minute wide while filling
  const WARN_C = 70;                      // temperature colours
  const HOT_C = 85;
  const INPUT_RAILS = ["vdd_in", "pom_5v_in", "vin"]; // docs/API.md 2.3 (power_mw), in this order
  const FIXED_SENSORS = ["pmic"];         // PMIC@50C/100C: a fixed pseudo-reading
  const DEFAULT_INTERVAL_S = 1;           // until two samples tell the real interval
  // Stale data: the server's one rule, read from /api/health (stale_after, docs/API.md),
  // never a number of this page's own. Read again now and then (and at every connect) to
  // follow a server restarted with another interval, and a step of the server's clock.
  const RULE_REFRESH_MS = 10000;
  const SERVER_RESTART_RETRY_MS = 1000;   // after "io server disconnect" (server stopping)
  const REFUSED_RETRY_MS = 5000;          // after a refused connection (token, cap)
  const HISTORY_FIELDS = "cpu.usage,cpu.cores.usage,gpu.usage,emc.usage,temperature,power";
  const BOARD_REFRESH_MS = 10000;         // /api/board: power mode and fans change, slowly
  const PALETTE = ["#76b900", "#3b82f6", "#f59e0b", "#ef4444", "#a855f7", "#14b8a6",
    "#ec4899", "#84cc16", "#f97316", "#06b6d4", "#8b5cf6", "#eab308"];
  const DASH = "\u2014";

  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const byId = (id) => document.getElementById(id);

  const state = {
    doc: null,
    lastPushAt: 0,        // Date.now() of the last push received
    staleAfterS: null,    // /api/health stale_after: the newest sample is stale past this age
    clockOffsetMs: null,  // the server's clock minus this browser's (from /api/health timestamp)
    clockErrorMs: null,   // ...known to within this (half the round trip, plus 1 ms rounding)
    connected: false,
    everConnected: false,
    refused: null,        // the server's reason when it refused the connection
    intervals: [],        // recent sample spacings, seconds
    history: [],          // compact samples, oldest first (see compact())
    renderQueued: false,
  };

  // ---------------------------------------------------------------- formatting

  function trimNum(v, digits) {
    return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  }

  function bytesMB(mb) {
    return mb >= 1024 ? (mb / 1024).toFixed(1) + " GB" : mb + " MB";
  }

  function watts(mw) {
    const w = mw / 1000;
    return (Math.abs(w) >= 10 ? w.toFixed(1) : w.toFixed(2)) + " W";
  }

  /** "14:03:07" (local time, 24 h) of epoch seconds. */
  function clock(seconds) {
    const d = new Date(seconds * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function clockTime(iso) {
    const t = Date.parse(iso);
    return Number.isNaN(t) ? iso : new Date(t).toLocaleTimeString();
  }

  /** Text for a raw value in a unit; null/undefined is "—" (or the element's data-null). */
  function format(value, unit, nullText) {
    if (value === null || value === undefined) return nullText === undefined ? DASH : nullText;
    if (typeof value === "boolean") return value ? "on" : "off";
    if (typeof value !== "number") return unit === "time" ? clockTime(value) : String(value);
    switch (unit) {
      case "%": return trimNum(value, 1) + " %";
      case "MHz": return value + " MHz";
      case "MB": return bytesMB(value);
      case "kB": return value + " kB";
      case "mW": return watts(value);
      case "C": return value.toFixed(1) + " \u00b0C";
      default: return String(value);
    }
  }

  // ---------------------------------------------------------------- document helpers

  function lookup(doc, path) {
    let node = doc;
    for (const key of path.split(".")) {
      if (node === null || node === undefined || typeof node !== "object") return undefined;
      node = node[key];
    }
    return node;
  }

  /** The board's input power (docs/API.md 2.3): {mw, rule}; mw null when no rail is printed. */
  function inputPower(power) {
    const rails = power || {};
    for (const name of INPUT_RAILS) {
      if (rails[name]) return { mw: rails[name].current, rule: name.toUpperCase() };
    }
    const names = Object.keys(rails);
    if (!names.length) return { mw: null, rule: "no rail printed" };
    const sum = names.reduce((acc, name) => acc + (rails[name].current || 0), 0);
    return { mw: sum, rule: "sum of " + names.length + " rail" + (names.length > 1 ? "s" : "") };
  }

  /** (°C, sensor) of the hottest real sensor, ignoring nulls and fixed pseudo-readings. */
  function hottest(temperature) {
    let best = null;
    for (const [name, value] of Object.entries(temperature || {})) {
      if (value === null || FIXED_SENSORS.includes(name)) continue;
      if (!best || value > best.value) best = { name, value };
    }
    return best;
  }

  function tempClass(value) {
    if (value === null || value === undefined) return "off";
    return value >= HOT_C ? "hot" : value >= WARN_C ? "warn" : "ok";
  }

  function percent(part, whole) {
    return whole ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0;
  }

  function setBar(el, pct, cls) {
    if (!el) return;
    el.style.width = (pct === null || pct === undefined ? 0 : Math.max(0, Math.min(100, pct))) + "%";
    if (cls !== undefined) el.className = cls;
  }

  // ---------------------------------------------------------------- keyed rows

  /** Make `container` hold one child per key, in order; `create(key)` builds a new one. */
  function syncKeyed(container, keys, create) {
    const existing = new Map();
    for (const child of Array.from(container.children)) existing.set(child.dataset.key, child);
    const out = new Map();
    keys.forEach((key, index) => {
      let el = existing.get(key);
      if (!el) {
        el = create(key);
        el.dataset.key = key;
      }
      existing.delete(key);
      if (container.children[index] !== el) container.insertBefore(el, container.children[index] || null);
      out.set(key, el);
    });
    existing.forEach((el) => el.remove());
    return out;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function field(tag, path, unit, extra) {
    return el(tag, Object.assign({ "data-field": path, "data-unit": unit || "", text: DASH }, extra || {}));
  }

  function meter(cls) {
    return el("span", { class: "meter" + (cls ? " " + cls : "") }, [el("i")]);
  }

  // ---------------------------------------------------------------- sections

  function renderCores(cpu) {
    const cores = (cpu && cpu.cores) || [];
    const online = cores.filter((c) => c.online).length;
    byId("cpu-caption").textContent = cores.length
      ? online + " of " + cores.length + " cores online" : "";
    byId("cores-empty").hidden = cores.length > 0;
    const cells = syncKeyed(byId("cores"), cores.map((c, i) => String(i)), (key) =>
      el("div", { class: "core" }, [
        el("span", { class: "fill" }),
        el("span", { class: "cid", text: "CPU" + key }),
        field("span", "cpu.cores." + key + ".usage", "%", { class: "cv", "data-null": "off" }),
        field("span", "cpu.cores." + key + ".freq", "MHz", { class: "cf", "data-null": " " }),
      ]));
    cores.forEach((core, i) => {
      const cell = cells.get(String(i));
      cell.classList.toggle("off", !core.online);
      cell.dataset.online = String(core.online);
      cell.firstChild.style.height = (core.online && core.usage !== null ? core.usage : 0) + "%";
    });
  }

  function renderGpu(gpu, emc) {
    gpu = gpu || {};
    const freqs = gpu.freq || [];
    byId("gpu-caption").textContent = freqs.length
      ? freqs.length + " GPC" + (freqs.length > 1 ? "s" : "") : "";
    setBar(byId("gpu-bar"), gpu.usage);
    syncKeyed(byId("gpcs"), freqs.map((f, i) => String(i)), (key) =>
      el("div", { class: "row" }, [
        el("span", { class: "name", text: "GPC" + key }),
        field("span", "gpu.usage_per_gpc." + key, "%", { class: "spacer sub", "data-null": "", "data-absent": "" }),
        field("span", "gpu.freq." + key, "MHz", { class: "val" }),
      ]));
    setBar(byId("emc-bar"), emc ? emc.usage : null);
    byId("card-gpu").classList.toggle("no-emc", !emc);
  }

  function renderMemory(memory) {
    const ram = memory.ram;
    setBar(byId("ram-bar"), percent(ram.used, ram.total));
    byId("ram-lfb").textContent = ram.lfb
      ? "largest free block " + ram.lfb.count + " \u00d7 " + ram.lfb.size + " " + ram.lfb.unit : "";
    const swap = memory.swap;
    byId("mem-swap").classList.toggle("absent", !swap);
    setBar(byId("swap-bar"), swap ? percent(swap.used, swap.total) : 0);
    const iram = memory.iram;
    byId("mem-iram").hidden = !iram;
    if (iram) setBar(byId("iram-bar"), percent(iram.used, iram.total));
  }

  /** Keys of a history section (temps, rails) in order of first appearance: a sensor or rail
   * missing from one sample keeps its row (showing "—") instead of making the card jump. */
  function keysSeen(prop, current) {
    const keys = [];
    for (const sample of state.history) for (const key of Object.keys(sample[prop])) if (!keys.includes(key)) keys.push(key);
    for (const key of Object.keys(current || {})) if (!keys.includes(key)) keys.push(key);
    return keys;
  }

  function renderTemperatures(temperature) {
    temperature = temperature || {};
    const names = keysSeen("temps", temperature);
    byId("temps-empty").hidden = names.length > 0;
    byId("temp-caption").textContent = names.length
      ? "warn \u2265 " + WARN_C + " \u00b0C \u00b7 hot \u2265 " + HOT_C + " \u00b0C" : "";
    const rows = syncKeyed(byId("temps"), names, (name) =>
      el("div", { class: "row temp" }, [
        el("span", { class: "name", text: name }),
        meter(),
        field("span", "temperature." + name, "C", { class: "val", "data-null": "off" }),
      ]));
    for (const name of names) {
      const value = temperature[name] === undefined ? null : temperature[name];
      const row = rows.get(name);
      const fixed = FIXED_SENSORS.includes(name);
      const cls = fixed ? "fixed" : tempClass(value);
      row.dataset.level = cls;
      row.title = fixed ? name + ": a fixed reading tegrastats prints, not a measurement" : "";
      row.querySelector(".name").textContent = fixed ? name + " (fixed)" : name;
      setBar(row.querySelector(".meter i"), value === null ? 0 : percent(value, 110), cls);
    }
  }

  function renderPower(power) {
    const rails = power || {};
    const names = keysSeen("rails", rails);
    byId("rails-empty").hidden = names.length > 0;
    const total = inputPower(rails);
    byId("power-rule").textContent = total.mw === null ? "" : "(" + total.rule + ")";
    const current = (name) => (rails[name] ? rails[name].current : 0);
    const peak = Math.max(1, ...names.map(current));
    const rows = syncKeyed(byId("rails"), names, (name) =>
      el("div", { class: "row rail" }, [
        el("span", { class: "name", text: name }),
        meter(),
        el("span", { class: "val" }, [
          field("b", "power." + name + ".current", "mW"),
          el("small", {}, [
            document.createTextNode(" avg "),
            field("span", "power." + name + ".average", "mW"),
            el("span", { class: "max" }, [document.createTextNode(" max "),
              field("span", "power." + name + ".max", "mW")]),
          ]),
        ]),
      ]));
    for (const name of names) {
      const row = rows.get(name);
      // A reading below zero is shown as printed, with an empty bar (a bar has no "below").
      const below = current(name) < 0;
      row.classList.toggle("input", INPUT_RAILS.includes(name) && total.rule === name.toUpperCase());
      row.classList.toggle("absent", !rails[name]);
      row.classList.toggle("below-zero", below);
      row.title = below ? name + " reads below zero (as tegrastats prints it)" : "";
      row.querySelector(".max").hidden = !rails[name] || rails[name].max === undefined;
      setBar(row.querySelector(".meter i"), percent(current(name), peak));
    }
    return total;
  }

  function renderEngines(engines) {
    const names = Object.keys(engines || {});
    byId("engines-empty").hidden = names.length > 0;
    const active = names.filter((n) => engines[n].online).length;
    byId("engines-caption").textContent = names.length ? active + " of " + names.length + " on" : "";
    const chips = syncKeyed(byId("engines"), names, (name) =>
      el("div", { class: "engine" }, [
        el("div", {}, [
          el("span", { class: "ename", text: name.toUpperCase() }),
          field("span", "engines." + name + ".online", "", { class: "estate" }),
        ]),
        el("div", {}, [
          field("span", "engines." + name + ".usage", "%", { class: "eusage", "data-null": "" }),
          field("span", "engines." + name + ".freq", "MHz", { class: "efreq", "data-null": "" }),
        ]),
      ]));
    for (const name of names) chips.get(name).classList.toggle("off", !engines[name].online);
  }

  function renderOther(doc) {
    const entries = [];
    if (doc.mts) {
      entries.push(["mts.fg", "MTS foreground", "%"], ["mts.bg", "MTS background", "%"]);
    }
    for (const name of Object.keys(doc.extra || {})) entries.push(["extra." + name, name, ""]);
    byId("card-other").hidden = entries.length === 0;
    syncKeyed(byId("other"), entries.map((e) => e[0]), (key) => {
      const entry = entries.find((e) => e[0] === key);
      return el("div", { class: "row" }, [el("span", { class: "name", text: entry[1] }),
        el("span", { class: "spacer" }), field("span", key, entry[2], { class: "val" })]);
    });
  }

  function renderTiles(doc, total) {
    const cpu = doc.cpu || {};
    const cores = cpu.cores || [];
    setBar(byId("tile-cpu-bar"), cpu.usage);
    const freqs = cores.filter((c) => c.online && c.freq !== null).map((c) => c.freq);
    const low = Math.min(...freqs);
    const high = Math.max(...freqs);
    byId("tile-cpu-sub").textContent = !freqs.length ? cores.length + " cores"
      : (low === high ? "" : low + "\u2013") + high + " MHz";
    const gpu = doc.gpu || {};
    setBar(byId("tile-gpu-bar"), gpu.usage);
    const gpcFreqs = (gpu.freq || []).filter((f) => f !== null);
    byId("tile-gpu-sub").textContent = gpu.usage === null && !gpcFreqs.length ? "load not printed"
      : gpcFreqs.length ? Math.max(...gpcFreqs) + " MHz" : "";
    const ram = doc.memory.ram;
    byId("tile-ram").textContent = bytesMB(ram.used);
    byId("tile-ram-sub").textContent = "of " + bytesMB(ram.total) + " \u00b7 " +
      Math.round(percent(ram.used, ram.total)) + " %";
    setBar(byId("tile-ram-bar"), percent(ram.used, ram.total));
    const hot = hottest(doc.temperature);
    const tempTile = byId("tile-temp");
    tempTile.textContent = hot ? format(hot.value, "C") : DASH;
    tempTile.dataset.value = JSON.stringify(hot ? hot.value : null);
    tempTile.parentNode.dataset.level = hot ? tempClass(hot.value) : "off";
    byId("tile-temp-sub").textContent = hot ? hot.name : "no sensor";
    setBar(byId("tile-temp-bar"), hot ? percent(hot.value, 110) : 0);
    byId("tile-power-sub").textContent = total.rule;
    setBar(byId("tile-power-bar"), total.mw === null ? 0 : percent(total.mw, maxSeen("total", total.mw)));
  }

  const peaks = {};
  function maxSeen(key, value) {
    peaks[key] = Math.max(peaks[key] || 0, value || 0);
    return peaks[key];
  }

  /** Every [data-field] element: text from its unit, raw value as JSON in data-value. */
  function renderFields(doc, computed) {
    for (const node of document.querySelectorAll("[data-field]")) {
      const path = node.dataset.field;
      const value = path in computed ? computed[path] : lookup(doc, path);
      // Absent from this sample: data-absent ("—" by default); null (printed as off or
      // without a value): data-null ("—" by default).
      node.dataset.value = JSON.stringify(value === undefined ? null : value);
      node.textContent = value === undefined
        ? (node.dataset.absent === undefined ? DASH : node.dataset.absent)
        : format(value, node.dataset.unit, node.dataset.null);
    }
  }

  function renderHeader(doc) {
    const badge = byId("source-badge");
    const labels = { simulator: "SIMULATED DATA", replay: "REPLAYED DATA" };
    badge.hidden = !labels[doc.source];
    badge.textContent = labels[doc.source] || "";
    badge.dataset.source = doc.source || "";
    const cores = (doc.cpu.cores || []).length;
    byId("summary-line").textContent = [
      cores ? cores + "-core CPU" : null,
      bytesMB(doc.memory.ram.total) + " RAM",
      "sample every " + trimNum(intervalS(), 1) + " s",
    ].filter(Boolean).join(" \u00b7 ");
  }

  function render() {
    state.renderQueued = false;
    const doc = state.doc;
    if (!doc) return;
    renderHeader(doc);
    renderCores(doc.cpu);
    renderGpu(doc.gpu, doc.emc);
    renderMemory(doc.memory);
    renderTemperatures(doc.temperature);
    const total = renderPower(doc.power);
    renderEngines(doc.engines);
    renderOther(doc);
    renderTiles(doc, total);
    renderFields(doc, { "power.total": total.mw });
    renderCharts();
  }

  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(render);
  }

  // ---------------------------------------------------------------- history and charts

  function compact(doc) {
    const cores = (doc.cpu && doc.cpu.cores) || [];
    const loads = cores.map((c) => c.usage).filter((u) => u !== null && u !== undefined);
    const rails = {};
    for (const [name, rail] of Object.entries(doc.power || {})) rails[name] = rail.current;
    return {
      t: Date.parse(doc.timestamp) / 1000,
      cpu: doc.cpu ? doc.cpu.usage : null,
      cpuMax: loads.length ? Math.max(...loads) : null,
      gpu: doc.gpu ? doc.gpu.usage : null,
      emc: doc.emc ? doc.emc.usage : null,
      temps: Object.assign({}, doc.temperature || {}),
      rails,
      total: inputPower(doc.power).mw,
    };
  }

  function noteInterval(dt) {
    if (!(dt > 0)) return;
    state.intervals.push(dt);
    if (state.intervals.length > 8) state.intervals.shift();
  }

  function intervalS() {
    if (!state.intervals.length) return DEFAULT_INTERVAL_S;
    const sorted = state.intervals.slice().sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  function trimHistory() {
    const history = state.history;
    if (!history.length) return;
    const cutoff = history[history.length - 1].t - WINDOW_S - 5;
    let drop = 0;
    while (drop < history.length && history[drop].t < cutoff) drop++;
    if (drop) history.splice(0, drop);
  }

  function addSample(doc) {
    const sample = compact(doc);
    if (Number.isNaN(sample.t)) return;
    const history = state.history;
    const last = history[history.length - 1];
    if (last && sample.t <= last.t) {
      if (sample.t > last.t - 2) return;     // the same sample again (reconnect)
      history.length = 0;                     // the clock went back: start over
    }
    if (last && history.length) noteInterval(sample.t - last.t);
    history.push(sample);
    trimHistory();
  }

  /** Seed the charts from /api/history (ignored quietly where the server has none). */
  async function backfill() {
    let body;
    try {
      const res = await fetch("api/history?seconds=" + WINDOW_S + "&fields=" + HISTORY_FIELDS, {
        headers: token ? { Authorization: "Bearer " + token } : {},
        cache: "no-store",
      });
      if (!res.ok) return;
      body = await res.json();
    } catch (err) {
      return;
    }
    if (!body || !Array.isArray(body.samples)) return;
    const first = state.history.length ? state.history[0].t : Infinity;
    const older = body.samples.map(compact).filter((s) => !Number.isNaN(s.t) && s.t < first);
    for (let i = 1; i < older.length; i++) noteInterval(older[i].t - older[i - 1].t);
    state.history.unshift(...older);
    trimHistory();
    queueRender();
  }

  // ---------------------------------------------------------------- the board (/api/board)

  /** "JetPack 6.2 (L4T 36.4.3)", "L4T 36.9.9", or "" when the release is unknown. */
  function releaseText(board) {
    if (!board.l4t) return board.jetpack ? "JetPack " + board.jetpack : "";
    return board.jetpack ? "JetPack " + board.jetpack + " (L4T " + board.l4t + ")" : "L4T " + board.l4t;
  }

  /** "fan 42 % · 2100 rpm" per fan (the name when there are several). */
  function fansText(fans) {
    return fans.map((fan) => {
      const label = fans.length > 1 ? fan.name : "fan";
      const speed = fan.speed === null ? DASH : trimNum(fan.speed, 1) + " %";
      return label + " " + speed + (fan.rpm === null ? "" : ", " + fan.rpm + " rpm");
    }).join(", ");
  }

  function renderBoard(board) {
    const model = byId("board-model");
    model.textContent = board.model || "Jetson";
    model.dataset.value = JSON.stringify(board.model);
    document.title = (board.model || "Jetson") + " \u00b7 tegrastats-api";
    const mode = board.power_mode;
    const parts = [
      releaseText(board),
      mode ? "power mode " + (mode.name || mode.id) : "",
      fansText(board.fans || []),
    ].filter(Boolean);
    const line = byId("board-line");
    line.textContent = parts.join(" \u00b7 ");
    line.hidden = !parts.length;
    line.dataset.value = JSON.stringify(board);
  }

  /** Fetch /api/board now and every BOARD_REFRESH_MS (quietly nothing where it fails). */
  async function loadBoard() {
    try {
      const res = await fetch("api/board", {
        headers: token ? { Authorization: "Bearer " + token } : {},
        cache: "no-store",
      });
      if (res.ok) renderBoard(await res.json());
    } catch (err) {
      // the server is restarting: the next round tries again
    }
    setTimeout(loadBoard, BOARD_REFRESH_MS);
  }

  const charts = {};

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartSpecs() {
    const h = state.history;
    const times = h.map((s) => s.t);
    const keysOf = (prop) => {
      const keys = [];
      for (const s of h) for (const k of Object.keys(s[prop])) if (!keys.includes(k)) keys.push(k);
      return keys;
    };
    const pct = (v) => (v === null || v === undefined ? DASH : trimNum(v, 1) + " %");
    const temps = keysOf("temps").filter((k) => !FIXED_SENSORS.includes(k) &&
      h.some((s) => s.temps[k] !== null && s.temps[k] !== undefined));
    const allRails = keysOf("rails");
    const inputRail = INPUT_RAILS.find((name) => allRails.includes(name));
    const rails = allRails.filter((name) => name !== inputRail);  // drawn as "board input"
    const w = (mw) => (mw === null || mw === undefined ? null : mw / 1000);
    return {
      "chart-cpu": {
        series: [{ label: "average", color: PALETTE[0], fill: true, width: 2 },
          { label: "busiest core", color: PALETTE[1], dash: [4, 3] }],
        data: [times, h.map((s) => s.cpu), h.map((s) => s.cpuMax)],
        range: () => [0, 100], fmt: pct,
        note: h.length && h.every((s) => s.cpu === null) ? "No CPU load printed." : "",
      },
      "chart-gpu": {
        series: [{ label: "GPU", color: PALETTE[0], fill: true, width: 2 },
          { label: "EMC", color: PALETTE[2] }],
        data: [times, h.map((s) => s.gpu), h.map((s) => s.emc)],
        range: () => [0, 100], fmt: pct,
        note: h.length && h.every((s) => s.gpu === null)
          ? "This board prints no GPU load (only clocks, see the GPU card)." : "",
      },
      "chart-temp": {
        series: temps.map((k, i) => ({ label: k, color: PALETTE[i % PALETTE.length] })),
        data: [times].concat(temps.map((k) => h.map((s) => (s.temps[k] === undefined ? null : s.temps[k])))),
        range: (u, min, max) => (min === null ? [20, 60]
          : [Math.floor(Math.min(min, 40) / 5) * 5, Math.ceil(Math.max(max, WARN_C - 10) / 5) * 5 + 5]),
        fmt: (v) => (v === null || v === undefined ? DASH : v.toFixed(1) + " \u00b0C"),
        note: h.length && !temps.length ? "No temperature sensor printed." : "",
      },
      "chart-power": {
        series: [{ label: "board input", color: PALETTE[0], fill: true, width: 2 }]
          .concat(rails.map((k, i) => ({ label: k, color: PALETTE[(i + 1) % PALETTE.length] }))),
        data: [times, h.map((s) => w(s.total))].concat(rails.map((k) => h.map((s) => w(s.rails[k])))),
        // From 0 (or below it, where a rail reads below zero) to above the highest value.
        range: (u, min, max) => [min === null || min >= 0 ? 0 : Math.floor(min * 1.15 - 0.5),
          max === null ? 5 : max <= 0 ? 1 : Math.ceil(max * 1.15 + 0.5)],
        fmt: (v) => (v === null || v === undefined ? DASH : v.toFixed(2) + " W"),
        note: h.length && h.every((s) => s.total === null) ? "No power rail printed." : "",
      },
    };
  }

  function chartHeight() {
    return window.innerWidth < 600 ? 150 : 180;
  }

  function makeChart(box, spec) {
    const muted = cssVar("--muted");
    const grid = cssVar("--grid");
    const axis = {
      stroke: muted, font: "11px system-ui, sans-serif",
      grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1, size: 4 },
    };
    const opts = {
      width: Math.max(200, box.clientWidth), height: chartHeight(),
      padding: [10, 22, 0, 0],  // room for the last time label
      cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 6 } },
      legend: { live: true },
      scales: {
        x: { time: true, range: () => viewRange() },
        y: { range: spec.range },
      },
      axes: [Object.assign({ space: 80, values: (u, ticks) => ticks.map(clock) }, axis),
        Object.assign({ size: 42 }, axis)],
      series: [{ label: "time", value: (u, v) => (v === null ? DASH : clock(v)) }]
        .concat(spec.series.map((s) => ({
          label: s.label, stroke: s.color, width: s.width || 1.25, dash: s.dash,
          fill: s.fill ? s.color + "26" : undefined, points: { show: false }, value: legendValue(spec.fmt),
        }))),
      // The drawn y range, on the figure as data-y-range="[min,max]" (read back by the tests).
      hooks: { setScale: [(u, key) => {
        if (key === "y") box.parentNode.dataset.yRange = JSON.stringify([u.scales.y.min, u.scales.y.max]);
      }] },
    };
    return new uPlot(opts, spec.data, box);
  }

  /** [start, end] of the charts: the last WINDOW_S seconds, at least MIN_VIEW_S wide. */
  function viewRange() {
    const h = state.history;
    if (!h.length) {
      const now = Date.now() / 1000;
      return [now - MIN_VIEW_S, now];
    }
    const end = h[h.length - 1].t;
    return [end - Math.min(WINDOW_S, Math.max(MIN_VIEW_S, end - h[0].t)), end];
  }

  /** Legend text: the value under the cursor, else the latest one. */
  function legendValue(fmt) {
    return (u, v, seriesIdx, idx) => {
      if (idx === null || idx === undefined) {
        const data = u.data[seriesIdx] || [];
        for (let i = data.length - 1; i >= 0; i--) if (data[i] !== null && data[i] !== undefined) return fmt(data[i]);
        return fmt(null);
      }
      return fmt(v);
    };
  }

  function renderCharts() {
    if (typeof uPlot === "undefined") return;
    const specs = chartSpecs();
    for (const [id, spec] of Object.entries(specs)) {
      const figure = byId(id);
      const box = figure.querySelector(".plot");
      const signature = spec.series.map((s) => s.label).join("|");
      let chart = charts[id];
      if (!chart || chart.signature !== signature) {
        if (chart) chart.u.destroy();
        chart = charts[id] = { u: makeChart(box, spec), signature };
      } else {
        chart.u.setData(spec.data);
      }
      const note = figure.querySelector(".note");
      note.textContent = spec.note;
      note.hidden = !spec.note;
    }
  }

  function rebuildCharts() {
    for (const id of Object.keys(charts)) {
      charts[id].u.destroy();
      delete charts[id];
    }
    renderCharts();
  }

  function resizeCharts() {
    for (const [id, chart] of Object.entries(charts)) {
      const box = byId(id).querySelector(".plot");
      chart.u.setSize({ width: Math.max(200, box.clientWidth), height: chartHeight() });
    }
  }

  // ---------------------------------------------------------------- connection

  /** Ask /api/health (no token needed) for the staleness rule and the server's time. */
  async function readRule() {
    const sent = Date.now();
    let body;
    try {
      const res = await fetch("api/health", { cache: "no-store" });
      body = await res.json();  // the same body with 200 and 503
    } catch (err) {
      return;  // no answer now: keep what is known, try again later
    }
    const received = Date.now();
    if (!body || typeof body.stale_after !== "number") return;
    state.staleAfterS = body.stale_after;
    const serverNow = Date.parse(body.timestamp);
    if (!Number.isNaN(serverNow)) {
      state.clockOffsetMs = serverNow - (sent + received) / 2;
      state.clockErrorMs = (received - sent) / 2 + 1;
    }
    renderConnection();
  }

  /** Age in seconds of the newest document, as /api/health counts it: the server's time now
   *  (this browser's clock plus the offset) minus the document's timestamp (when the server
   *  read the line). Before the server's time is known: the time since the last push. */
  function dataAge(now) {
    if (!state.lastPushAt) return null;
    const stamp = state.doc ? Date.parse(state.doc.timestamp) : NaN;
    if (state.clockOffsetMs !== null && !Number.isNaN(stamp)) {
      return Math.max(0, (now + state.clockOffsetMs - stamp) / 1000);
    }
    return (now - state.lastPushAt) / 1000;
  }

  function connectionState(age) {
    const ageText = age === null ? "" : " (data " + Math.round(age) + " s old)";
    if (state.refused) {
      const hint = /token/.test(state.refused) && !token ? " (add ?token=\u2026 to this page's address)" : "";
      return ["refused", "refused: " + state.refused + hint];
    }
    if (!state.connected) {
      return state.everConnected ? ["reconnecting", "reconnecting\u2026" + ageText] : ["connecting", "connecting\u2026"];
    }
    if (age === null) return ["waiting", "connected, waiting for the first sample\u2026"];
    if (state.staleAfterS !== null && age > state.staleAfterS) {
      return ["stale", "stale data (age " + Math.round(age) + " s)"];
    }
    return ["live", "live"];
  }

  function renderConnection() {
    const now = Date.now();
    const age = dataAge(now);
    const [name, text] = connectionState(age);
    const badge = byId("connection");
    if (badge.dataset.state !== name) badge.dataset.state = name;
    if (badge.textContent !== text) badge.textContent = text;
    // What the verdict was made of, for tests and the curious: the age (s), the rule's limit
    // (s), and when it was judged on the server's clock (epoch ms) with its uncertainty (ms).
    badge.dataset.age = age === null ? "" : String(age);
    badge.dataset.staleAfter = state.staleAfterS === null ? "" : String(state.staleAfterS);
    badge.dataset.judgedAt = state.clockOffsetMs === null ? "" : String(now + state.clockOffsetMs);
    badge.dataset.clockError = state.clockErrorMs === null ? "" : String(state.clockErrorMs);
    document.body.classList.toggle("not-live", name !== "live" && state.doc !== null);
  }

  /** The server's reason when it answered the Engine.IO handshake with an error (its JSON
   *  `{"error": ...}` on a 4xx/5xx polling request), else null (network down, no answer). */
  function handshakeRefusal(err) {
    const xhr = err && err.context;
    if (!xhr || !(xhr.status >= 400) || typeof xhr.responseText !== "string") return null;
    try {
      const body = JSON.parse(xhr.responseText);
      return body && typeof body.error === "string" ? body.error : null;
    } catch (e) {
      return null;
    }
  }

  function connect() {
    if (typeof io === "undefined") {
      state.refused = "the Socket.IO client did not load";
      renderConnection();
      return;
    }
    const options = {
      path: new URL("socket.io", location.href).pathname,  // works under a reverse-proxy prefix too
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 2000,          // a LAN dashboard: come back quickly after a restart
    };
    if (token) {
      options.query = { token };
      options.auth = { token };
    }
    const socket = io(options);
    socket.on("connect", () => {
      state.connected = true;
      state.everConnected = true;
      state.refused = null;
      renderConnection();
      readRule();  // the server may have restarted with another interval
    });
    socket.on("disconnect", (reason) => {
      state.connected = false;
      renderConnection();
      // The server said goodbye (it is stopping or restarting): socket.io-client does not
      // reconnect by itself after that, so try again; the manager backs off from there.
      if (reason === "io server disconnect") setTimeout(() => socket.connect(), SERVER_RESTART_RETRY_MS);
    });
    socket.on("connect_error", (err) => {
      state.connected = false;
      if (!socket.active) {
        // Refused by the server (token, connection cap): no automatic retry, so retry slowly.
        state.refused = (err && err.message) || "connection refused";
        setTimeout(() => socket.connect(), REFUSED_RETRY_MS);
      } else {
        // The handshake itself may be refused (no token, too many handshakes): the client
        // sees a transport error and would retry every second; show why and retry slowly.
        const reason = handshakeRefusal(err);
        if (reason) {
          state.refused = reason;
          socket.disconnect();
          setTimeout(() => socket.connect(), REFUSED_RETRY_MS);
        }
      }
      renderConnection();
    });
    socket.on("tegrastats_update", (doc) => {
      if (!doc || typeof doc !== "object" || !doc.memory || !doc.cpu) return;
      state.doc = doc;
      state.lastPushAt = Date.now();
      state.refused = null;
      addSample(doc);
      renderConnection();
      queueRender();
    });
  }

  function init() {
    byId("host").textContent = location.hostname;
    if (token) {
      for (const link of document.querySelectorAll("footer a")) {
        link.href = link.getAttribute("href") + "?token=" + encodeURIComponent(token);
      }
    }
    if ("ResizeObserver" in window) {
      let pending = false;
      new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; resizeCharts(); });
      }).observe(document.querySelector(".charts"));
    }
    if (window.matchMedia) {
      const dark = window.matchMedia("(prefers-color-scheme: dark)");
      const onChange = () => rebuildCharts();
      if (dark.addEventListener) dark.addEventListener("change", onChange);
    }
    setInterval(renderConnection, 500);
    setInterval(readRule, RULE_REFRESH_MS);
    readRule();
    renderConnection();
    renderCharts();
    connect();
    backfill();
    loadBoard();
  }

  init();
})();
