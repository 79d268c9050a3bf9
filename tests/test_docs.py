"""docs/API.md against the parser and the contract, so the reference cannot drift.

What it checks: every path of every document the parser makes from a real line is in
the doc's field table with its JSON type (and every row of the table still exists);
the JSON examples parse and equal what :func:`parse_line` returns for their lines; the
tables of token forms say what the parser does; the Python examples run and print what
their ``# ->`` comments say; every endpoint of the shared contract's section 3 (copied
into tests/fixtures/contract_endpoints.md) has its section; the command line section
names every setting, command and exit code; nothing cites a file that is not in the
repository (the shared ``CONTRACT.md``, the shared folder beside the checkout).

Examples are tied to the parser by HTML comments just before a fenced block:
``<!-- doc-test: line -->`` (a tegrastats line), ``parsed`` / ``parsed full`` (its
document, in part / whole), ``row N`` (part of the document of samples.tsv row N),
``section NAME`` (an ``/api/NAME`` answer), ``health``, ``error`` and ``python``.

Pure: no server, no I/O beyond reading the doc, the fixtures and the repository's files.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import pytest

from tegrastats_api import parse_line

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "API.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
SAMPLES_PATH = ROOT / "tests" / "fixtures" / "tegrastats" / "samples.tsv"
with SAMPLES_PATH.open(encoding="utf-8", newline="") as _f:
    SAMPLES = list(csv.DictReader(_f, delimiter="\t"))
BY_ID = {row["id"]: row["line"] for row in SAMPLES}
# Section 3 of the shared contract, copied verbatim (tests/fixtures/README.md).
CONTRACT_PATH = ROOT / "tests" / "fixtures" / "contract_endpoints.md"
CONTRACT_SECTION_SHA256 = "34cff742dfc7ebf36a9ffb62919a0ad3079fa692777b213404ca492cf7fd186c"

# Keys chosen by the board: the doc writes them as these placeholders.
DYNAMIC = {"temperature": "<sensor>", "power": "<rail>", "engines": "<engine>", "extra": "<token>"}
JSON_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SOURCES = ("tegrastats", "simulator", "replay")
# The contract's section 3, health row (cross-checked against the copy of the contract).
CONTRACT_HEALTH_KEYS = [
    "status", "service", "timestamp", "connected_clients", "max_connections", "source",
    "last_sample_age", "samples", "parse_errors", "restarts", "version",
]
# What /api/health answers: the contract's keys plus the staleness rule (interval, stale_after)
# and the board's model (the contract's section 7: "`/api/health` carries `model`").
HEALTH_KEYS = CONTRACT_HEALTH_KEYS[:-1] + ["interval", "stale_after", "version", "model"]
# The contract's sections 3 and 6: every path, whether served yet or planned.
ENDPOINTS = [
    "/api/health", "/api/status", "/api/cpu", "/api/memory", "/api/temperature", "/api/power",
    "/", "/socket.io/", "/ws", "/metrics", "/api/history",
]
PLANNED: List[str] = []  # everything of the contract is served now
SERVED_SINCE_PLANNED = ["/metrics", "/api/history", "/api/summary", "fields="]
BASE = "RAM 2358/62841MB (lfb 14809x4MB) CPU [6%@729,5%@729] "  # for single-token checks


# --- reading the doc ---------------------------------------------------------------


class Block(NamedTuple):
    """A fenced code block: its language, text, the doc-test marker before it, its line."""

    lang: str
    text: str
    marker: Optional[str]
    lineno: int


def _blocks(text: str) -> List[Block]:
    """Every fenced block, with the ``<!-- doc-test: X -->`` marker right above it (if any)."""
    blocks: List[Block] = []
    lines = text.split("\n")
    marker: Optional[str] = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"<!-- doc-test: (.+?) -->$", line.strip())
        if m:
            marker = m.group(1)
        elif line.startswith("```"):
            start, body = i, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(line[3:].strip(), "\n".join(body), marker, start + 1))
            marker = None
        elif line.strip():
            marker = None  # a marker applies only to the block right below it
        i += 1
    return blocks


BLOCKS = _blocks(DOC)


def _section(text: str, heading: str) -> str:
    """From the heading line starting with ``heading`` to the next heading of its level or above."""
    lines = text.split("\n")
    level = len(heading.split(" ")[0])
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    out: List[str] = []
    fenced = False
    for line in lines[start + 1:]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,%d} " % level, line):
            break
        out.append(line)
    return "\n".join(out)


def _rows(text: str) -> List[List[str]]:
    """Cells of the markdown table rows whose first cell starts with a code span."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.split("\n")
        if line.startswith("| `")
    ]


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.M | re.S)


def _spans(text: str) -> List[str]:
    """The inline code spans of the prose of ``text``."""
    return re.findall(r"`([^`\n]+)`", _prose(text))


FIELD_SECTION = _section(DOC, "### 1.2 ")
FIELD_ROWS = {_spans(row[0])[0]: row for row in _rows(FIELD_SECTION)}
DOC_SPANS = set(_spans(DOC))


# --- the documents of every line -----------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _nodes(value: Any, path: str = "") -> Iterator[Tuple[str, Any]]:
    """(path, value) of every node below the root; lists as ``[]``, board keys as placeholders."""
    if path:
        yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            name = DYNAMIC[path] if path in DYNAMIC else key
            yield from _nodes(item, "%s.%s" % (path, name) if path else name)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item, path + "[]")


def _doc_lines() -> List[str]:
    return [b.text.strip() for b in BLOCKS if b.marker == "line"]


CORPUS = [row["line"] for row in SAMPLES] + _doc_lines()
DOCUMENTS = [parse_line(line).to_dict() for line in CORPUS]
OBSERVED: Dict[str, Set[str]] = {}
for _document in DOCUMENTS:
    for _path, _value in _nodes(_document):
        OBSERVED.setdefault(_path, set()).add(_json_type(_value))


def _documented_types(path: str) -> Set[str]:
    cell = FIELD_ROWS[path][1]
    types = set(re.findall(r"\b(%s)\b" % "|".join(JSON_TYPES), cell))
    if "number" in types:
        types.add("integer")  # JSON numbers include integers
    return types


# --- field table ---------------------------------------------------------------------


def test_field_table_is_found():
    assert len(FIELD_ROWS) >= 55, "the field table of section 1.2 lost rows or its heading"
    for path, row in FIELD_ROWS.items():
        assert len(row) == 6, "field table row %s must have 6 cells: %r" % (path, row)
        assert _documented_types(path), "no JSON type for %s" % path


@pytest.mark.parametrize("path", sorted(OBSERVED))
def test_every_document_path_is_in_the_field_table(path):
    assert path in FIELD_ROWS, (
        "%s appears in parse_line() documents but not in the field table of docs/API.md "
        "(section 1.2); document it" % path
    )
    missing = OBSERVED[path] - _documented_types(path)
    assert not missing, "%s is sometimes %s; its row says %r" % (path, missing, FIELD_ROWS[path][1])


def test_every_field_table_row_still_exists():
    stale = sorted(set(FIELD_ROWS) - set(OBSERVED))
    assert not stale, "documented but never produced by the parser: %s" % stale


def test_every_leaf_of_every_sample_is_documented():
    # Every leaf path of every samples.tsv row, checked directly (lists as [], keys as placeholders).
    for row in SAMPLES:
        for path, value in _nodes(parse_line(row["line"]).to_dict()):
            if not isinstance(value, (dict, list)) or not value:
                assert path in FIELD_ROWS, "row %s: %s is not documented" % (row["id"], path)


def test_keys_that_can_be_absent_say_so():
    # A fixed key missing from some document while its parent object is there must be
    # documented as "absent" (mts, gpu.usage_per_gpc, power.<rail>.max).
    for path, row in FIELD_ROWS.items():
        parent, _, key = path.rpartition(".")
        if key.startswith("<") or key.endswith("[]"):
            continue
        for document in DOCUMENTS:
            holders = [document] if not parent else [v for p, v in _nodes(document) if p == parent]
            for holder in holders:
                if isinstance(holder, dict) and key not in holder:
                    assert "absent" in row[4], "%s can be absent; its row must say when" % path


def test_placeholders_are_explained():
    intro = _section(DOC, "### 1.2 ").split("|")[0]
    for placeholder in DYNAMIC.values():
        assert "`%s`" % placeholder in intro, "explain %s above the field table" % placeholder


# --- JSON examples -------------------------------------------------------------------


def test_every_json_example_parses_and_is_checked():
    json_blocks = [b for b in BLOCKS if b.lang == "json"]
    assert len(json_blocks) >= 10
    for block in json_blocks:
        try:
            json.loads(block.text)
        except ValueError as err:  # pragma: no cover - the message is the point
            pytest.fail("docs/API.md line %d: JSON does not parse: %s" % (block.lineno, err))
        assert block.marker, "docs/API.md line %d: JSON without a doc-test marker" % block.lineno


def _full_example() -> Tuple[str, Dict[str, Any]]:
    """(line, document) of the ``parsed full`` example and the line block before it."""
    line = None
    for block in BLOCKS:
        if block.marker == "line":
            line = block.text.strip()
        if block.marker == "parsed full":
            assert line is not None, "the full example needs a line block above it"
            return line, json.loads(block.text)
    raise AssertionError("docs/API.md has no <!-- doc-test: parsed full --> example")


def test_full_example_is_a_real_line():
    line, _ = _full_example()
    assert line in BY_ID.values(), "the full example must be a real line of samples.tsv"


def test_full_example_equals_the_parser():
    line, example = _full_example()
    assert TIMESTAMP_RE.match(example["timestamp"]), example["timestamp"]
    assert example["source"] in SOURCES
    expected = parse_line(line).to_dict()
    expected["timestamp"], expected["source"] = example["timestamp"], example["source"]
    assert example == expected
    # Same key order too: the doc shows the document as the server writes it.
    assert json.dumps(example) == json.dumps(expected)


def test_full_example_is_agx_orin_jetpack_6():
    line, example = _full_example()
    row = next(r for r in SAMPLES if r["line"] == line)
    assert "AGX Orin" in row["model"] and "JetPack 6" in row["l4t_or_jetpack"]
    assert example["source_time"] is not None


def test_partial_examples_equal_the_parser():
    checked = 0
    line = None
    for block in BLOCKS:
        if block.marker == "line":
            line = block.text.strip()
            parse_line(line)  # a line shown in the doc must be tegrastats output
            continue
        marker = block.marker or ""
        if not (marker.startswith("row ") or marker == "parsed"):
            continue
        if block.marker == "parsed":
            assert line is not None, "line %d: 'parsed' needs a line block above it" % block.lineno
            source = line
        else:
            row_id = marker.split()[1]
            assert row_id in BY_ID, "line %d: no samples.tsv row %s" % (block.lineno, row_id)
            source = BY_ID[row_id]
        document = parse_line(source).to_dict()
        example = json.loads(block.text)
        for key, value in example.items():
            where = "docs/API.md line %d, %r" % (block.lineno, key)
            assert value == document[key], where + " differs from the parser"
            assert json.dumps(value) == json.dumps(document[key]), where + ": key order"
        checked += 1
    assert checked >= 6


def test_section_examples_equal_the_full_example():
    _, full = _full_example()
    seen = set()
    for block in BLOCKS:
        if block.marker and block.marker.startswith("section "):
            name = block.marker.split()[1]
            example = json.loads(block.text)
            expected = {name: full[name], "timestamp": full["timestamp"]}
            assert json.dumps(example) == json.dumps(expected)
            seen.add(name)
    assert seen == {"cpu", "memory", "temperature", "power"}


def test_summary_and_fields_examples_equal_what_the_server_computes():
    from tegrastats_api.fields import parse_fields, select
    from tegrastats_api.summary import summarize

    _, full = _full_example()
    checked = set()
    for block in BLOCKS:
        marker = block.marker or ""
        if marker == "summary":
            example = json.loads(block.text)
            assert json.dumps(example) == json.dumps(summarize(full))
            assert len(json.dumps(example, separators=(",", ":"))) <= 256
            checked.add("summary")
        elif marker.startswith("fields "):
            example = json.loads(block.text)
            assert json.dumps(example) == json.dumps(select(full, parse_fields(marker.split()[1])))
            checked.add("fields")
    assert checked == {"summary", "fields"}


def test_health_example_has_the_contract_keys():
    examples = [json.loads(b.text) for b in BLOCKS if b.marker == "health"]
    assert examples
    for example in examples:
        assert list(example) == HEALTH_KEYS
        assert example["status"] in ("healthy", "degraded", "starting")
        assert example["service"] == "tegrastats-api"
        assert TIMESTAMP_RE.match(example["timestamp"])
    table = {_spans(row[0])[0] for row in _rows(_section(DOC, "### `GET /api/health`"))}
    assert set(HEALTH_KEYS) <= table, "the health key table misses %s" % (set(HEALTH_KEYS) - table)
    row = next(r for r in _contract_section_3().split("\n") if "/api/health" in r)
    for key in CONTRACT_HEALTH_KEYS:
        assert '"%s"' % key in row, "%s is not in the contract's health row" % key


def test_the_staleness_rule_is_documented_with_the_servers_number():
    from tegrastats_api.hub import STALE_INTERVALS, SnapshotHub

    section = " ".join(_section(DOC, "### `GET /api/health`").split())
    assert "`stale_after` = %d × `--update-interval`" % STALE_INTERVALS in section
    assert "older than %d intervals" % STALE_INTERVALS in section
    assert SnapshotHub("replay", interval_s=0.4).stale_after_s == STALE_INTERVALS * 0.4


def test_error_examples_have_the_contract_shape():
    examples = [json.loads(b.text) for b in BLOCKS if b.marker == "error"]
    assert examples
    for example in examples:
        assert list(example) == ["error", "status"] and isinstance(example["status"], int)
    assert {"error": "no data yet", "status": 503} in examples


def test_document_size_claim():
    # Section 1.1 promises firmware authors "under 2 kB" for every recorded board.
    assert "under 2 kB" in DOC
    for line in BY_ID.values():
        document = parse_line(line, 1762220813.481, source="tegrastats").to_dict()
        assert len(json.dumps(document, separators=(",", ":"))) < 2048


# --- tables of token forms -------------------------------------------------------------


def _cell_json(cell: str) -> Any:
    return json.loads(cell.strip("`"))


def test_gpu_table_matches_the_parser():
    section = _section(DOC, "### 1.5 ")
    rows = [r for r in _rows(section) if r[0].startswith("`GR3D")]
    assert len(rows) >= 8
    for printed, usage, freq, per_gpc, _where in rows:
        gpu = parse_line(BASE + printed.strip("`")).to_dict()["gpu"]
        assert gpu["usage"] == gpu["gr3d_freq"] == _cell_json(usage), printed
        assert gpu["freq"] == _cell_json(freq), printed
        if per_gpc == "absent":
            assert "usage_per_gpc" not in gpu, printed
        else:
            assert gpu["usage_per_gpc"] == _cell_json(per_gpc), printed


def test_engine_value_forms_match_the_parser():
    section = _section(DOC, "### 1.6 ")
    table = section.split("Known engine names")[0]
    rows = _rows(table)
    assert len(rows) == 5
    for _printed, online, usage, freq, examples in rows:
        for token in _spans(examples):
            engines = parse_line(BASE + token).to_dict()["engines"]
            assert len(engines) == 1, token
            engine = next(iter(engines.values()))
            assert engine["online"] == (online == "`true`"), token
            assert (engine["usage"] is None) == (usage == "null"), token
            assert (engine["freq"] is None) == (freq == "null"), token


def test_known_engine_table_matches_the_parser():
    section = _section(DOC, "### 1.6 ")
    table = section.split("Known engine names")[1].split("The parser's pattern")[0]
    rows = _rows(table)
    assert len(rows) >= 10
    for keys_cell, printed_cell, _boards in rows:
        keys = set(_spans(keys_cell))
        for token in _spans(printed_cell):
            document = parse_line(BASE + token).to_dict()
            assert not document["extra"], token
            assert set(document["engines"]) <= keys and document["engines"], (token, keys)


@pytest.mark.parametrize(
    "token",
    ["NVDLA2 37%@1000", "NVENC2 off", "PVA 5", "ISP_UTIL 3%", "NVENC @[1,2]", "EMC_FREQ off",
     "GR3D_FREQ off", "GR3D2_FREQ 0%@0"],
)
def test_tokens_the_doc_sends_to_extra_go_to_extra(token):
    assert "`%s`" % token.split()[0] in DOC or "`%s`" % token in DOC
    document = parse_line(BASE + token).to_dict()
    name, _, value = token.partition(" ")
    assert document["extra"] == {name: value}
    assert not document["engines"] and document["emc"] is None


def test_every_recorded_name_is_listed():
    # Sensor, rail and engine keys of every real line appear in the doc's tables.
    for document in DOCUMENTS[: len(SAMPLES)]:
        for section in ("temperature", "power", "engines"):
            for key in document[section]:
                assert key in DOC_SPANS, "%s key %r is not listed in docs/API.md" % (section, key)


def test_rail_mapping_from_the_original():
    table = _section(DOC, "### 2.1 ")
    mapping = {_spans(r[0])[0]: _spans(r[1])[0] for r in _rows(table) if len(r) == 3}
    assert mapping == {
        "power.gpu_soc": "power.vdd_gpu_soc",
        "power.cpu_cv": "power.vdd_cpu_cv",
        "power.sys_5v": "power.vin_sys_5v0",
    }
    document = parse_line(BY_ID["8"]).to_dict()
    for new in mapping.values():
        assert new.split(".")[1] in document["power"]


# --- Python examples -------------------------------------------------------------------


def test_python_examples_run_and_print_what_they_say():
    blocks = [b for b in BLOCKS if b.marker == "python"]
    assert blocks
    namespace: Dict[str, Any] = {}
    for block in blocks:
        expected = [m.group(1).strip() for m in re.finditer(r"# -> (.*)$", block.text, re.M)]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block.text, "docs/API.md:%d" % block.lineno, "exec"), namespace)
        assert out.getvalue().splitlines() == expected, "docs/API.md line %d" % block.lineno
    board_power_mw = namespace["board_power_mw"]
    assert board_power_mw(parse_line(BY_ID["27"]).to_dict()) == 4520  # pom_5v_in
    assert board_power_mw(parse_line(BY_ID["64"]).to_dict()) == 16802  # vin
    assert board_power_mw(parse_line(BY_ID["8"]).to_dict()) == 3188 + 2390 + 4614 + 802  # sum
    assert board_power_mw(parse_line(BY_ID["17"]).to_dict()) is None  # no rails


# --- endpoints -------------------------------------------------------------------------


def _contract_section_3() -> str:
    return _section(CONTRACT_PATH.read_text(encoding="utf-8"), "## 3. ")


def _path_of(span: str) -> str:
    span = re.sub(r"^(GET|POST|OPTIONS) ", "", span.strip())
    span = re.sub(r"^(ws|http)s?://host:port", "", span)
    return span.split("?")[0]


def _contract_paths() -> List[str]:
    paths = []
    for row in _rows(_contract_section_3()):
        paths += [_path_of(s) for s in _spans(row[0])]
    assert set(ENDPOINTS) <= set(paths), "the contract's section 3 no longer reads as expected"
    return paths


def test_every_contract_endpoint_is_documented():
    headings = {
        _path_of(s)
        for line in DOC.split("\n")
        if line.startswith("### ")
        for s in _spans(line)
    }
    planned = _section(DOC, "## 5. ")
    planned_paths = {_path_of(s) for s in _spans(planned)}
    for path in _contract_paths():
        assert path in headings or path in planned_paths, "no section in docs/API.md for %s" % path


def test_planned_items_are_marked_planned():
    planned = _section(DOC, "## 5. ")
    for item in PLANNED:
        assert item in planned, "%s must be listed under 'Planned'" % item
    for item in SERVED_SINCE_PLANNED:
        assert item not in planned, "%s is served: it has its own section, not a 'Planned' row" % item
    assert "tegrastats_update" in DOC


def test_metrics_table_names_every_family_and_the_example_is_real():
    from prometheus_client.parser import text_string_to_metric_families

    from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
    from tegrastats_api.metrics import make_registry, render

    hub = SnapshotHub("tegrastats", clock=lambda: 1762220813.481)
    hub.feed_line(BY_ID["8"])  # the full example of section 1.1
    text = render(make_registry(hub, ConnectionLimiter(10))).decode("utf-8")
    declared = {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(text)}
    section = _section(DOC, "### `GET /metrics`")
    assert {row[0].strip("`") for row in _rows(section)} == declared
    examples = [block for block in BLOCKS if block.marker == "metrics"]
    assert len(examples) == 1
    for line in examples[0].text.strip().split("\n"):
        assert line in text.split("\n"), line


def test_history_and_openapi_have_their_sections():
    history = _section(DOC, "### `GET /api/history`")
    for phrase in ("seconds", "fields", "--history-size", "no data yet", '{"samples": []}', "400"):
        assert phrase in history, phrase
    assert "OpenAPI 3.1" in _section(DOC, "### `GET /api/openapi.json`")


def test_doc_names_the_contract_rules():
    phrases = ('"schema": 1', "no data yet", "--auth-token", "--max-connections", "connect_error",
               "204", "401", "503", "parse_errors", "from tegrastats_api import", "ParseError")
    for phrase in phrases:
        assert phrase in DOC, phrase


def test_the_contract_copy_is_the_recorded_section():
    text = CONTRACT_PATH.read_text(encoding="utf-8")
    section = text[text.index("## 3. "):]
    assert hashlib.sha256(section.encode("utf-8")).hexdigest() == CONTRACT_SECTION_SHA256
    assert CONTRACT_SECTION_SHA256 in (ROOT / "tests" / "fixtures" / "README.md").read_text(encoding="utf-8")


# --- the command line (section 6) -------------------------------------------------------


def test_command_line_section_names_every_command_setting_and_exit_code():
    from tegrastats_api.cli import ExitStatus
    from tegrastats_api.config import COMMANDS, ENV_PREFIX, SETTINGS, Config

    section = _section(DOC, "## 6. ")
    commands = {_spans(row[0])[0].split()[1] for row in _rows(section)
                if _spans(row[0])[0].startswith("tegrastats-api ")}
    assert commands == set(COMMANDS)
    settings = {_spans(row[0])[0].split()[0]: row for row in _rows(_section(DOC, "### 6.1 "))}
    assert set(settings) == {s.flag for s in SETTINGS}
    defaults = {name: f.default for name, f in Config.__dataclass_fields__.items()}
    for setting in SETTINGS:
        row = settings[setting.flag]
        assert row[1] == "`%s%s`" % (ENV_PREFIX, setting.name.upper()), row
        default = defaults.get(setting.name)
        if isinstance(default, bool):
            assert row[2].startswith("`%s`" % str(default).lower()), row
        elif isinstance(default, tuple):
            assert row[2].startswith("`%s`" % ",".join(default)), row
        elif default is not None:
            assert row[2].startswith("`%s`" % default), row
    codes = [line.split("|")[1].strip() for line in _section(DOC, "### 6.2 ").split("\n") if re.match(r"\| \d ", line)]
    assert codes == [str(int(status)) for status in ExitStatus]


# --- nothing cites a file that is not in the repository ---------------------------------

LICENCE_WORDS = "CONTRACT, TORT"  # the MIT licence's own words, not a citation


def _repository_files() -> List[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=str(ROOT), capture_output=True, timeout=60, check=True).stdout
    return [ROOT / name for name in listed.decode("utf-8").split("\0") if name and (ROOT / name).is_file()]


def _text_of(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


# These two still cite CONTRACT.md in one docstring line each; other work rewrites them and
# changes the citation to docs/API.md section 6 (Settings / Exit codes). The test fails when
# one no longer cites it, so that the exception goes with the citation.
CONTRACT_CITATIONS_PENDING: set = set()


def test_nothing_cites_the_shared_contract_file():
    """docs/API.md is the contract users read: code, docs, tests and packaging cite it, never
    the shared CONTRACT.md, which is not in the repository (tests/fixtures/ keeps a copy of
    its section 3 and says where it comes from)."""
    citing = set()
    for path in _repository_files():
        relative = path.relative_to(ROOT).as_posix()
        text = _text_of(path)
        if text is None or relative.startswith("tests/fixtures/") or relative == "tests/test_docs.py":
            continue
        if re.search(r"CONTRACT(\.md| ?§)", text.replace(LICENCE_WORDS, "")):
            citing.add(relative)
    assert citing == CONTRACT_CITATIONS_PENDING, (
        "cite docs/API.md instead in %s; no longer citing it (drop from CONTRACT_CITATIONS_PENDING): %s"
        % (sorted(citing - CONTRACT_CITATIONS_PENDING), sorted(CONTRACT_CITATIONS_PENDING - citing)))


# A relative path up to the shared folder, a quoted path part named shared, or parents[N] / it.
SHARED_RE = re.compile(r"""\.\.[/]shared|["']shared["']|parents?\[\d\]\s*/\s*["']shared""")


def test_no_test_refers_to_the_shared_folder():
    """A fresh clone without the shared folder beside it runs every test: what tests read is in
    tests/fixtures/ (with its provenance in tests/fixtures/README.md)."""
    tests = [p for p in _repository_files()
             if p.relative_to(ROOT).parts[0] == "tests" and "node_modules" not in p.parts
             and p.suffix in (".py", ".js", ".sh", ".cfg", ".ini", ".toml", ".txt", ".json")
             and "fixtures" not in p.relative_to(ROOT).parts]
    assert len(tests) > 20
    referring = [p.relative_to(ROOT).as_posix() for p in tests if SHARED_RE.search(_text_of(p) or "")]
    assert referring == [], referring
    for config in (ROOT / "pyproject.toml", ROOT / "Makefile"):
        assert not SHARED_RE.search(config.read_text(encoding="utf-8")), config
