"""The OpenAPI 3.1 description of every endpoint, served at ``/api/openapi.json``.

What it does: :func:`build_spec` returns the description as a dict: the REST endpoints,
``/metrics``, this document, the dashboard and the two push endpoints (as a ``GET`` that
upgrades with 101; the frames are described in words and in ``x-websocket-message``), and
the snapshot document as JSON Schema 2020-12 (docs/API.md section 1): nullable fields as
``["integer", "null"]``, board-chosen names (sensors, rails, engines, unknown tokens) as
``additionalProperties``, fixed objects closed with ``additionalProperties: false``.
``SnapshotFields`` is the same shape with nothing required but ``timestamp``: what a
``fields=`` projection sends. :func:`encode_spec` gives the bytes the handler serves.

What it does not: generate anything from the code at run time (tests check that the
description and the server agree) or serve HTTP.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Dict, List, Sequence

from tegrastats_api import __version__

Schema = Dict[str, Any]
REF = "#/components/schemas/"


def _t(kind: str, nullable: bool = False, **extra: Any) -> Schema:
    return dict({"type": [kind, "null"] if nullable else kind}, **extra)


def _obj(props: Dict[str, Schema], partial: bool, *, optional: Sequence[str] = (), nullable: bool = False) -> Schema:
    """A closed object; every property is required unless ``optional`` or ``partial``."""
    schema: Schema = {"type": ["object", "null"] if nullable else "object", "properties": props,
                      "additionalProperties": False}
    if not partial:
        schema["required"] = [key for key in props if key not in optional]
    return schema


def _map(values: Schema) -> Schema:
    return {"type": "object", "additionalProperties": values}


def _sections(p: bool) -> Dict[str, Schema]:
    """The document's sections; ``p`` (partial) drops ``required`` for ``fields=`` projections."""
    integer, n_int = _t("integer"), _t("integer", True)
    core = _obj({"id": _t("integer", minimum=0), "online": _t("boolean"), "usage": n_int, "freq": n_int}, p)
    lfb = _obj({"count": integer, "size": integer, "unit": _t("string", enum=["MB", "kB"])}, p, nullable=True)
    rail = _obj({"current": integer, "average": n_int, "max": integer, "unit": _t("string", const="mW")},
                p, optional=["max"])
    return {
        "cpu": _obj({"usage": _t("number", True), "cores": _t("array", items=core)}, p),
        "memory": _obj({
            "ram": _obj({"used": integer, "total": integer, "unit": _t("string", const="MB"), "lfb": lfb}, p),
            "swap": _obj({"used": integer, "total": integer, "cached": n_int, "unit": _t("string", const="MB")},
                         p, nullable=True),
            "iram": _obj({"used": integer, "total": integer, "unit": _t("string", const="kB"), "lfb": n_int},
                         p, nullable=True),
        }, p),
        "temperature": _map(_t("number", True)),
        "power": _map(rail),
        "gpu": _obj({"gr3d_freq": n_int, "usage": n_int, "freq": _t("array", items=n_int),
                     "usage_per_gpc": _t("array", items=n_int)}, p, optional=["usage_per_gpc"]),
        "emc": _obj({"usage": n_int, "freq": n_int}, p, nullable=True),
        "engines": _map(_obj({"online": _t("boolean"), "usage": n_int, "freq": n_int}, p)),
    }


TIMESTAMP = _t("string", True, format="date-time", description="UTC, ISO 8601 with milliseconds and Z")


def _snapshot(partial: bool) -> Schema:
    props: Dict[str, Schema] = {
        "schema": _t("integer", const=1),
        "timestamp": TIMESTAMP,
        "source": {"enum": ["tegrastats", "simulator", "replay", None]},
        "source_time": _t("string", True, pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"),
    }
    props.update(_sections(partial))
    props["mts"] = _obj({"fg": _t("integer"), "bg": _t("integer")}, partial)
    props["extra"] = _map(_t("string"))
    schema = _obj(props, partial, optional=["mts"])
    if partial:
        schema["required"] = ["timestamp"]
    return schema


def _board() -> Schema:
    """``/api/board`` (docs/API.md): the board's own facts, null when unknown."""
    n_str = _t("string", True)
    fan = _obj({"name": _t("string"), "speed": _t("number", True, minimum=0, maximum=100, description="% of full PWM"),
                "rpm": _t("integer", True, minimum=0, description="tachometer, null without one")}, False)
    mode = _obj({"id": _t("integer", minimum=0), "name": n_str}, False, nullable=True)
    return _obj({
        "model": n_str, "l4t": _t("string", True, pattern=r"^\d+\.\d+\.\d+$"), "jetpack": n_str,
        "power_mode": mode, "fans": _t("array", items=fan), "hostname": n_str, "kernel": n_str,
        "uptime": _t("number", True, minimum=0, description="seconds since boot"),
        "source": _t("string", enum=["board", "simulator", "replay"]), "timestamp": TIMESTAMP,
    }, False)


def _schemas() -> Dict[str, Schema]:
    n_int, string = _t("integer", True), _t("string")
    full = _sections(False)
    sections = {"%sSection" % name.capitalize(): _obj({name: full[name], "timestamp": TIMESTAMP}, False)
                for name in ("cpu", "memory", "temperature", "power")}
    return dict(sections, **{
        "Snapshot": _snapshot(False),
        "SnapshotFields": _snapshot(True),
        "Error": _obj({"error": string, "status": _t("integer")}, False),
        "Health": _obj({
            "status": _t("string", enum=["healthy", "degraded", "starting"]),
            "service": _t("string", const="tegrastats-api"), "timestamp": TIMESTAMP,
            "connected_clients": _t("integer"), "max_connections": _t("integer"), "source": string,
            "last_sample_age": _t("number", True), "samples": _t("integer"), "parse_errors": _t("integer"),
            "restarts": _t("integer"), "interval": _t("number"), "stale_after": _t("number"),
            "version": string,
            "model": _t("string", True, description="the board's model (/api/board), null when unknown"),
        }, False),
        "Board": _board(),
        "Summary": _obj({
            "timestamp": TIMESTAMP, "source": _t("string", True), "cpu": _t("number", True), "gpu": n_int,
            "ram_used": _t("integer"), "ram_total": _t("integer"), "swap_used": n_int,
            "temp_max": _t("number", True), "temp_max_sensor": _t("string", True), "power_mw": n_int,
        }, False),
        "History": _obj({"samples": _t("array", items={"anyOf": [{"$ref": REF + "Snapshot"},
                                                                 {"$ref": REF + "SnapshotFields"}]})}, False),
    })


def _json(ref: str, description: str) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF + ref}}}}


def _errors(*codes: int) -> Dict[str, Any]:
    reasons = {400: "bad query parameter (the message names it)", 401: "missing or invalid token (--auth-token)",
               403: "Origin not allowed", 503: "no data yet (before the first sample), or over --max-connections"}
    return {str(code): _json("Error", reasons[code]) for code in codes}


FIELDS = {"name": "fields", "in": "query", "required": False, "schema": {"type": "string"},
          "description": "comma-separated paths (cpu.usage,temperature.tj); unknown paths are a 400"}
SECONDS = {"name": "seconds", "in": "query", "required": False, "schema": {"type": "number", "minimum": 0},
           "description": "keep the samples read within the last N seconds; all kept samples when absent"}


def _get(summary: str, ok: Dict[str, Any], *errors: int, params: Sequence[Schema] = (), **extra: Any) -> Schema:
    operation: Schema = {"summary": summary, "responses": dict({"200": ok}, **_errors(*errors))}
    if params:
        operation["parameters"] = list(params)
    operation.update(extra)
    return {"get": operation}


def _push(summary: str, description: str, params: Sequence[Schema], bad_request: Dict[str, Any]) -> Schema:
    return {"get": {
        "summary": summary, "description": description, "tags": ["push"], "parameters": list(params),
        "x-websocket-message": {"$ref": REF + "Snapshot"},
        "responses": dict({"101": {"description": "switching protocols: the push connection is open"},
                           "400": bad_request}, **_errors(401, 403, 503)),
    }}


def _paths() -> Dict[str, Schema]:
    section = {name: _get("the %s section of the newest sample" % name,
                          _json("%sSection" % name.capitalize(), "section and timestamp"), 401, 503, tags=["data"])
               for name in ("cpu", "memory", "temperature", "power")}
    paths = {
        "/api/health": {"get": {"summary": "service health; never needs a token", "security": [], "tags": ["meta"],
                                "responses": {"200": _json("Health", "healthy"),
                                              "503": _json("Health", "starting (no sample yet) or degraded")}}},
        "/api/status": _get("the newest snapshot document", {
            "description": "the document, or its fields= projection",
            "content": {"application/json": {"schema": {"anyOf": [{"$ref": REF + "Snapshot"},
                                                                   {"$ref": REF + "SnapshotFields"}]}}}},
            400, 401, 503, params=[FIELDS], tags=["data"]),
        "/api/board": _get("the board's own facts: model, L4T and JetPack, power mode, fans, hostname, kernel, "
                           "uptime (read under $TEGRASTATS_API_SYSROOT); 200 before the first sample too",
                           _json("Board", "board facts, null where the board lacks them"), 401, tags=["data"]),
        "/api/summary": _get("headline numbers in under 256 bytes", _json("Summary", "summary"), 401, 503,
                             tags=["data"]),
        "/api/history": _get("the kept samples, oldest first", _json("History", "samples"), 400, 401, 503,
                             params=[SECONDS, FIELDS], tags=["data"]),
        "/metrics": _get("Prometheus text format (jetson_ prefix, base units); 200 even before the first sample", {
            "description": "exposition text", "content": {"text/plain": {"schema": {"type": "string"}}}},
            401, tags=["monitoring"]),
        "/api/openapi.json": _get("this description", {
            "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
            401, tags=["meta"]),
        "/": _get("the browser dashboard (static files; no token needed)", {
            "description": "index.html", "content": {"text/html": {"schema": {"type": "string"}}}},
            security=[], tags=["meta"]),
        "/ws": _push("native WebSocket: one JSON text frame (the snapshot document) per sample",
                     "The latest document is sent at once on connect. ?fields= cuts every frame down.",
                     [FIELDS], _json("Error", "not a WebSocket upgrade, or unknown fields")),
        "/socket.io/": _push("Socket.IO (EIO=4): event tegrastats_update carries the snapshot document",
                             "Query EIO=4 and transport=polling or websocket, as Socket.IO clients send them.",
                             [], _json("Error", "a refused handshake (token, cap, origin), a bad query or session")),
    }
    paths.update({"/api/%s" % name: op for name, op in section.items()})
    return paths


def build_spec() -> Dict[str, Any]:
    """The OpenAPI 3.1 description of tegrastats-api (a fresh dict)."""
    security: List[Dict[str, List[str]]] = [{"bearer": []}, {"token": []}]
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "tegrastats-api", "version": __version__, "license": {"name": "MIT", "identifier": "MIT"},
                 "description": "Live NVIDIA Jetson health from tegrastats. Every answer is JSON (errors as "
                                "{error, status}) except /metrics, the dashboard and Socket.IO polling. With "
                                "--auth-token, every path but /api/health and the dashboard needs the token."},
        "security": security,
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer T"},
                "token": {"type": "apiKey", "in": "query", "name": "token", "description": "?token=T"},
            },
        },
    }


@functools.lru_cache(maxsize=1)
def encode_spec() -> bytes:
    """:func:`build_spec` as compact JSON bytes, built once per process (it has no inputs)."""
    return json.dumps(build_spec(), separators=(",", ":")).encode("utf-8")
