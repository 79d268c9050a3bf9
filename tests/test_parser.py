"""The parser against every real line, golden documents, edge cases and mutations.

Pure: no Tornado, no I/O beyond reading the fixtures.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tegrastats_api
from tegrastats_api import ParseError, parse_line
from tegrastats_api.snapshot import Snapshot

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tegrastats"
with (FIXTURES / "samples.tsv").open(encoding="utf-8", newline="") as _f:
    SAMPLES = list(csv.DictReader(_f, delimiter="\t"))
LINES = [row["line"] for row in SAMPLES]
BY_ID = {row["id"]: row["line"] for row in SAMPLES}
GOLDEN = sorted((FIXTURES / "golden").glob("*.json"))
MALFORMED = [
    line
    for line in (FIXTURES / "malformed.txt").read_text(encoding="utf-8").split("\n")
    if line and not line.startswith("#")
]

TOP_KEYS = [
    "schema", "timestamp", "source", "source_time", "cpu", "memory",
    "temperature", "power", "gpu", "emc", "engines", "extra",
]


def _doc(line: str, **kw: object) -> dict:
    return parse_line(line, **kw).to_dict()  # type: ignore[arg-type]


# --- every real line -------------------------------------------------------------


# The shared samples.tsv this copy was made from (tests/fixtures/README.md).
SAMPLES_SHA256 = "3c5fb63c13fe7929dd68d8098709f684fdc080bd08b3d1a59c7253c55e4e079a"


def test_fixture_is_the_recorded_copy_of_every_shared_sample():
    data = (FIXTURES / "samples.tsv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SAMPLES_SHA256, "samples.tsv changed: see tests/fixtures/README.md"
    assert SAMPLES_SHA256 in (FIXTURES.parent / "README.md").read_text(encoding="utf-8")
    ids = [int(row["id"]) for row in SAMPLES]
    assert ids == sorted(set(ids))  # one row per id, in order


def test_fixture_rows_have_id_and_source():
    assert len(SAMPLES) >= 50
    for row in SAMPLES:
        assert row["id"].isdigit() and row["source"].strip() and row["line"].startswith(("RAM", "0", "1"))


@pytest.mark.parametrize("row", SAMPLES, ids=[r["id"] for r in SAMPLES])
def test_every_real_line_is_fully_understood(row):
    line = row["line"]
    doc = _doc(line)
    assert doc["extra"] == {}, "tokens not understood: %r" % doc["extra"]
    assert [k for k in doc if k != "mts"] == TOP_KEYS
    assert ("mts" in doc) == (" MTS fg " in line)
    # Count each token family in the raw text independently of the parser.
    assert len(doc["temperature"]) == len(re.findall(r"\S+@-?[0-9.]+C\b", line))
    assert len(doc["power"]) == len(re.findall(r"\b(?!RAM |SWAP |IRAM )[A-Z][A-Z0-9_]* [0-9]+(?:mW)?/", line))
    listing = re.search(r"\b(?:CPU|cpu) \[([^\]]*)\]", line)
    assert len(doc["cpu"]["cores"]) == (listing.group(1).count(",") + 1 if listing else 0)
    assert doc["memory"]["ram"]["total"] == int(re.search(r"RAM [0-9]+/([0-9]+)MB", line).group(1))
    assert (doc["memory"]["swap"] is None) == ("SWAP " not in line)
    assert (doc["memory"]["iram"] is None) == ("IRAM " not in line)
    assert (doc["emc"] is None) == (re.search(r"\bEMC(?:_FREQ)? ", line) is None)
    assert (doc["source_time"] is None) == (re.match(r"[0-9]{2}-", line) is None)
    json.dumps(doc, allow_nan=False)


@pytest.mark.parametrize("row", SAMPLES, ids=[r["id"] for r in SAMPLES])
def test_cpu_usage_is_the_rounded_mean_of_online_cores(row):
    doc = _doc(row["line"])
    loads = [c["usage"] for c in doc["cpu"]["cores"] if c["online"]]
    expected = round(sum(loads) / len(loads), 1) if loads else None
    assert doc["cpu"]["usage"] == expected
    assert [c["id"] for c in doc["cpu"]["cores"]] == list(range(len(doc["cpu"]["cores"])))
    for core in doc["cpu"]["cores"]:
        if not core["online"]:
            assert core["usage"] is None and core["freq"] is None


# --- golden documents, one per board family and release ---------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_document(path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    assert BY_ID[str(golden["id"])] == golden["line"]
    actual = _doc(golden["line"])
    expected = golden["expected"]
    assert list(actual) == list(expected)
    for key in expected:  # field by field, so a failure names the section
        assert actual[key] == expected[key], key


def test_golden_set_covers_every_generation():
    ids = {json.loads(p.read_text())["id"] for p in GOLDEN}
    # TX1 old tool, TX1 L4T 28, TX2 L4T 28/32, Nano JP4, Xavier JP4/JP5, Xavier NX, Orin NX
    # JP5, AGX Orin JP5.0/5.1.2/JP6, Orin Nano JP6, automotive Orin, Thor JP7.1/7.2.
    assert {17, 5, 6, 1, 27, 53, 24, 13, 54, 51, 57, 28, 8, 21, 11, 31, 67} <= ids


# --- the four documents the issue names, written out by hand ----------------------

EXPECTED_AGX_ORIN_JP6 = {
    "schema": 1,
    "timestamp": "2025-10-26T05:10:54.500Z",
    "source": "tegrastats",
    "source_time": "2025-10-26T05:10:54",
    "cpu": {
        "usage": 3.0,
        "cores": [
            {"id": i, "online": True, "usage": u, "freq": 729}
            for i, u in enumerate([5, 1, 0, 9, 1, 3, 5, 0, 3, 1, 1, 7])
        ],
    },
    "memory": {
        "ram": {"used": 6879, "total": 62841, "unit": "MB", "lfb": {"count": 3, "size": 4, "unit": "MB"}},
        "swap": {"used": 0, "total": 31421, "cached": 0, "unit": "MB"},
        "iram": None,
    },
    "temperature": {
        "cpu": 47.687, "tboard": 36.75, "soc2": 44.312, "tdiode": 37.5,
        "soc0": 45.718, "gpu": 43.218, "tj": 47.687, "soc1": 45.125,
    },
    "power": {
        "vdd_gpu_soc": {"current": 2801, "average": 2801, "unit": "mW"},
        "vdd_cpu_cv": {"current": 400, "average": 400, "unit": "mW"},
        "vin_sys_5v0": {"current": 4536, "average": 4536, "unit": "mW"},
        "vddq_vdd2_1v8ao": {"current": 604, "average": 604, "unit": "mW"},
    },
    "gpu": {"gr3d_freq": 0, "usage": 0, "freq": [305, 305]},
    "emc": {"usage": 0, "freq": 2133},
    "engines": dict(
        [(name, {"online": False, "usage": None, "freq": None})
         for name in ("nvenc", "nvdec", "nvjpg", "nvjpg1", "vic", "ofa", "nvdla0", "nvdla1", "pva0")]
        + [("ape", {"online": True, "usage": None, "freq": 174})]
    ),
    "extra": {},
}

EXPECTED_NANO_JP4 = {
    "schema": 1, "timestamp": None, "source": None, "source_time": None,
    "cpu": {
        "usage": 6.2,
        "cores": [
            {"id": 0, "online": True, "usage": 16, "freq": 204},
            {"id": 1, "online": True, "usage": 9, "freq": 204},
            {"id": 2, "online": True, "usage": 0, "freq": 204},
            {"id": 3, "online": True, "usage": 0, "freq": 204},
        ],
    },
    "memory": {
        "ram": {"used": 534, "total": 3964, "unit": "MB", "lfb": {"count": 98, "size": 4, "unit": "MB"}},
        "swap": {"used": 5, "total": 1982, "cached": 1, "unit": "MB"},
        "iram": {"used": 0, "total": 252, "unit": "kB", "lfb": 252},
    },
    "temperature": {"pll": 34.0, "cpu": 36.5, "pmic": 100.0, "gpu": 36.0, "ao": 39.5, "thermal": 36.25},
    "power": {
        "pom_5v_in": {"current": 1022, "average": 1022, "unit": "mW"},
        "pom_5v_gpu": {"current": 0, "average": 0, "unit": "mW"},
        "pom_5v_cpu": {"current": 204, "average": 204, "unit": "mW"},
    },
    "gpu": {"gr3d_freq": 0, "usage": 0, "freq": [76]},
    "emc": {"usage": 0, "freq": 204},
    "engines": {"ape": {"online": True, "usage": None, "freq": 25}},
    "extra": {},
}

EXPECTED_TX1_OLD = {
    "schema": 1, "timestamp": None, "source": None, "source_time": None,
    "cpu": {
        "usage": 23.2,
        "cores": [
            {"id": 0, "online": True, "usage": 17, "freq": 1734},
            {"id": 1, "online": True, "usage": 11, "freq": 1734},
            {"id": 2, "online": True, "usage": 65, "freq": 1734},
            {"id": 3, "online": True, "usage": 0, "freq": 1734},
        ],
    },
    "memory": {
        "ram": {"used": 3607, "total": 3983, "unit": "MB", "lfb": {"count": 47, "size": 4, "unit": "MB"}},
        "swap": {"used": 873, "total": 8192, "cached": 281, "unit": "MB"},
        "iram": None,
    },
    "temperature": {},
    "power": {},
    "gpu": {"gr3d_freq": 39, "usage": 39, "freq": [76]},
    "emc": {"usage": 1, "freq": 1600},
    "engines": {"ape": {"online": True, "usage": None, "freq": 25}},
    "extra": {},
}

EXPECTED_THOR_JP72 = {
    "schema": 1, "timestamp": None, "source": None, "source_time": "2026-07-23T15:29:26",
    "cpu": {
        "usage": 19.9,
        "cores": [
            {"id": i, "online": True, "usage": u, "freq": f}
            for i, (u, f) in enumerate([
                (39, 2160), (20, 2160), (16, 1944), (15, 1944), (17, 972), (15, 972), (19, 2214),
                (22, 2214), (13, 2430), (20, 2430), (26, 972), (19, 972), (15, 1836), (22, 1836),
            ])
        ],
    },
    "memory": {
        "ram": {"used": 9101, "total": 125811, "unit": "MB", "lfb": {"count": 19, "size": 4, "unit": "MB"}},
        "swap": {"used": 0, "total": 2048, "cached": 0, "unit": "MB"},
        "iram": None,
    },
    "temperature": {"cpu": 34.843, "tj": 35.906, "soc012": 34.437, "gpu": 35.906, "soc345": 34.406},
    "power": {
        "vdd_gpu": {"current": 4925, "average": 4925, "max": 4925, "unit": "mW"},
        "vdd_cpu_soc_mss": {"current": 8710, "average": 8710, "max": 8710, "unit": "mW"},
        "vin_sys_5v0": {"current": 6767, "average": 6767, "max": 6767, "unit": "mW"},
    },
    "gpu": {"gr3d_freq": None, "usage": None, "freq": [314, 314, 314]},
    "emc": {"usage": 7, "freq": 3200},
    "engines": {
        "nvenc0": {"online": True, "usage": None, "freq": 1556},
        "nvenc1": {"online": True, "usage": None, "freq": 1556},
        "nvdec0": {"online": True, "usage": None, "freq": 1556},
        "nvdec1": {"online": True, "usage": None, "freq": 1556},
        "nvjpg0": {"online": True, "usage": None, "freq": 1556},
        "vic": {"online": True, "usage": 59, "freq": 423},
        "ofa": {"online": True, "usage": None, "freq": 1556},
        "pva0": {"online": False, "usage": None, "freq": None},
        "ape": {"online": True, "usage": None, "freq": 300},
    },
    "extra": {},
}

NAMED = [
    ("9", {"received_at": 1761455454.5, "source": "tegrastats"}, EXPECTED_AGX_ORIN_JP6),
    ("48", {}, EXPECTED_NANO_JP4),
    ("20", {}, EXPECTED_TX1_OLD),
    ("67", {}, EXPECTED_THOR_JP72),
]


@pytest.mark.parametrize("sample_id,kwargs,expected", NAMED, ids=["agx-orin-jp6", "nano-jp4", "tx1-old", "thor-jp7.2"])
def test_named_documents_exactly(sample_id, kwargs, expected):
    assert _doc(BY_ID[sample_id], **kwargs) == expected


@pytest.mark.parametrize("sample_id,kwargs,expected", NAMED, ids=["agx-orin-jp6", "nano-jp4", "tx1-old", "thor-jp7.2"])
def test_named_documents_through_python_c(sample_id, kwargs, expected):
    """The issue's own check: ``python -c "import tegrastats_api; print(...)"``."""
    code = (
        "import json, sys, tegrastats_api; "
        "print(json.dumps(tegrastats_api.parse_line(sys.argv[1], **json.loads(sys.argv[2])).to_dict()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, BY_ID[sample_id], json.dumps(kwargs)],
        check=True, capture_output=True, text=True, timeout=30, cwd=str(Path.home()),
    ).stdout
    assert json.loads(out) == expected


# --- table-driven edge cases ------------------------------------------------------

RAM = "RAM 100/3964MB (lfb 1x4MB)"

EDGES = [
    # (line suffix after RAM, path into the document, expected value)
    ("CPU [5%@102,off,7%@204]", ("cpu", "cores", 1), {"id": 1, "online": False, "usage": None, "freq": None}),
    ("CPU [5%@102,off,7%@204]", ("cpu", "usage"), 6.0),
    ("CPU [off,off]", ("cpu", "usage"), None),
    ("CPU [0%,5%,off]@2601", ("cpu", "cores"), [
        {"id": 0, "online": True, "usage": 0, "freq": 2601},
        {"id": 1, "online": True, "usage": 5, "freq": 2601},
        {"id": 2, "online": False, "usage": None, "freq": None}]),
    ("CPU [5%,6%, , ]@300", ("cpu", "cores", 3, "online"), False),
    ("CPU [1%,2%]", ("cpu", "cores", 0, "freq"), None),
    ("CPU [1%,2%,4%]", ("cpu", "usage"), 2.3),
    ("", ("cpu"), {"usage": None, "cores": []}),
    ("EMC_FREQ @3199", ("emc"), {"usage": None, "freq": 3199}),
    ("EMC_FREQ 4%", ("emc"), {"usage": 4, "freq": None}),
    ("EMC 1%@408", ("emc"), {"usage": 1, "freq": 408}),
    ("", ("emc",), None),
    ("GR3D_FREQ 0% GR3D2_FREQ 0%@0", ("gpu"), {"gr3d_freq": 0, "usage": 0, "freq": [None, 0], "usage_per_gpc": [0, 0]}),
    ("GR3D_FREQ 12%@[1300,1300]", ("gpu"), {"gr3d_freq": 12, "usage": 12, "freq": [1300, 1300]}),
    ("GR3D_FREQ @[0,0,0]", ("gpu"), {"gr3d_freq": None, "usage": None, "freq": [0, 0, 0]}),
    ("GR3D_FREQ 39%", ("gpu"), {"gr3d_freq": 39, "usage": 39, "freq": []}),
    ("GR3D 3%@76", ("gpu", "freq"), [76]),
    ("", ("gpu"), {"gr3d_freq": None, "usage": None, "freq": []}),
    ("NVENC 1%@115", ("engines", "nvenc"), {"online": True, "usage": 1, "freq": 115}),
    ("NVENC0_FREQ @1556", ("engines", "nvenc0"), {"online": True, "usage": None, "freq": 1556}),
    ("VIC_FREQ 729", ("engines", "vic"), {"online": True, "usage": None, "freq": 729}),
    ("NVENC_LOAD 7%", ("engines", "nvenc"), {"online": True, "usage": 7, "freq": None}),
    ("MSENC 115", ("engines", "msenc"), {"online": True, "usage": None, "freq": 115}),
    ("NVDEC off", ("engines", "nvdec"), {"online": False, "usage": None, "freq": None}),
    ("PVA0_FREQ off", ("engines", "pva0"), {"online": False, "usage": None, "freq": None}),
    ("APE 174", ("engines", "ape"), {"online": True, "usage": None, "freq": 174}),
    ("NVENC 0%@115", ("engines", "nvenc", "freq"), 115),  # 0% load keeps its frequency
    ("MTS fg 3% bg 9%", ("mts",), {"fg": 3, "bg": 9}),
    ("CPU@-256C tj@44.5C", ("temperature"), {"cpu": None, "tj": 44.5}),
    ("cpu@34.843C/35.5C", ("temperature", "cpu"), 34.843),
    ("Tboard@29C", ("temperature", "tboard"), 29.0),
    ("GPU 463/463", ("power", "gpu"), {"current": 463, "average": 463, "unit": "mW"}),
    ("VDD_GPU_SOC 2340mW/2340mW", ("power", "vdd_gpu_soc"), {"current": 2340, "average": 2340, "unit": "mW"}),
    ("VIN 87426mW/43713mW/87426mW", ("power", "vin"), {"current": 87426, "average": 43713, "max": 87426, "unit": "mW"}),
    ("NC 0mW/0mW X 1mW/1mW NC 5mW/6mW NC 7mW/8mW", ("power",), {
        "nc": {"current": 0, "average": 0, "unit": "mW"},
        "x": {"current": 1, "average": 1, "unit": "mW"},
        "nc_2": {"current": 5, "average": 6, "unit": "mW"},
        "nc_3": {"current": 7, "average": 8, "unit": "mW"}}),
    ("VDD_GPU 5517mW", ("power", "vdd_gpu"), {"current": 5517, "average": None, "unit": "mW"}),
    # A reading below zero is a value (VDD_CPU_CV -398mW/-398mW, AGX Orin JetPack 6 without
    # root), in every rail form, in any of the values; never a token for ``extra``.
    ("VDD_CPU_CV -398mW/-398mW", ("power", "vdd_cpu_cv"), {"current": -398, "average": -398, "unit": "mW"}),
    ("VDD_CPU_CV -398mW/-398mW", ("extra",), {}),
    ("VDD_IN -398/-398", ("power", "vdd_in"), {"current": -398, "average": -398, "unit": "mW"}),
    ("POM_5V_GPU 12/-3", ("power", "pom_5v_gpu"), {"current": 12, "average": -3, "unit": "mW"}),
    ("GPU -7/40", ("power", "gpu"), {"current": -7, "average": 40, "unit": "mW"}),
    ("VDD_GPU -5mW/-3mW/10mW", ("power", "vdd_gpu"), {"current": -5, "average": -3, "max": 10, "unit": "mW"}),
    ("VIN 5mW/6mW/-1mW", ("power", "vin"), {"current": 5, "average": 6, "max": -1, "unit": "mW"}),
    ("VDD_GPU -5517mW", ("power", "vdd_gpu"), {"current": -5517, "average": None, "unit": "mW"}),
    ("VDD_IN -0/-0", ("power", "vdd_in"), {"current": 0, "average": 0, "unit": "mW"}),
    ("NC -1mW/0mW NC 0mW/-2mW", ("power",), {
        "nc": {"current": -1, "average": 0, "unit": "mW"},
        "nc_2": {"current": 0, "average": -2, "unit": "mW"}}),
    # Malformed signs stay verbatim in extra.
    ("VDD_IN --3/4", ("extra",), {"VDD_IN": "--3/4"}),
    ("VDD_IN -/4", ("extra",), {"VDD_IN": "-/4"}),
    ("VDD_IN 3-/4", ("extra",), {"VDD_IN": "3-/4"}),
    # Temperatures below zero (GRAMMAR.md section 8: value := ["-"] digits ["." digits]).
    ("cpu@-40C tj@-0.5C", ("temperature"), {"cpu": -40.0, "tj": -0.5}),
    ("BCPU@-45C", ("temperature", "bcpu"), -45.0),
    ("cpu@-3.25C/-1C", ("temperature", "cpu"), -3.25),
    ("cpu@-0C", ("temperature", "cpu"), 0.0),
    ("CV0@-256C/-256C", ("temperature", "cv0"), None),
    ("gpu@-256.0C", ("temperature", "gpu"), None),
    # Loads, clocks and sizes are counts: tegrastats never prints them below zero, so a
    # minus sign there is not understood and the token is kept as printed.
    ("GR3D_FREQ -5%", ("extra",), {"GR3D_FREQ": "-5%"}),
    ("EMC_FREQ -1%@2133", ("extra",), {"EMC_FREQ": "-1%@2133"}),
    ("NVENC 3%@-115", ("extra",), {"NVENC": "3%@-115"}),
    ("APE -174", ("extra",), {"APE": "-174"}),
    ("CPU [-5%@102,3%@204]", ("extra",), {"CPU": "[-5%@102,3%@204]"}),
    ("MTS fg -3% bg 9%", ("extra",), {"MTS": "fg", "-3%": "", "bg": "9%"}),
    ("NVDLA2 37%@1000", ("extra",), {"NVDLA2": "37%@1000"}),
    ("FUTURE_TOKEN value", ("extra",), {"FUTURE_TOKEN": "value"}),
    ("LONELY", ("extra",), {"LONELY": ""}),
    ("FOO BAR", ("extra",), {"FOO": "", "BAR": ""}),
    ("GR3D_FREQ 1% GR3D_FREQ 2%", ("extra",), {"GR3D_FREQ": "2%"}),
    ("CPU [1%@102,4%@1", ("extra",), {"CPU": "[1%@102,4%@1"}),
    ("SWAP 0/0MB", ("memory", "swap"), {"used": 0, "total": 0, "cached": None, "unit": "MB"}),
    ("IRAM 0/252kB(lfb 252kB)", ("memory", "iram"), {"used": 0, "total": 252, "unit": "kB", "lfb": 252}),
]


def _dig(doc, path):
    if isinstance(path, str):
        path = (path,)
    for key in path:
        doc = doc[key]
    return doc


@pytest.mark.parametrize("suffix,path,expected", EDGES, ids=["%d-%s" % (i, e[0][:24]) for i, e in enumerate(EDGES)])
def test_edge_case(suffix, path, expected):
    assert _dig(_doc((RAM + " " + suffix).strip()), path) == expected


def test_ram_without_lfb_and_kb_lfb():
    assert _doc("RAM 4300/30698MB GR3D_FREQ 45%")["memory"]["ram"]["lfb"] is None
    lfb = _doc("RAM 4722/7844MB (lfb 1x512kB)")["memory"]["ram"]["lfb"]
    assert lfb == {"count": 1, "size": 512, "unit": "kB"}


def test_timestamp_and_source_only_when_given():
    doc = _doc(BY_ID["8"])
    assert doc["timestamp"] is None and doc["source"] is None
    assert doc["source_time"] == "2025-11-04T01:46:53"
    doc = _doc(BY_ID["8"], received_at=0.0015, source="replay")
    assert doc["timestamp"] == "1970-01-01T00:00:00.001Z" and doc["source"] == "replay"


def test_impossible_timestamp_is_kept_in_extra():
    doc = _doc("13-45-2025 10:00:00 " + RAM)
    assert doc["source_time"] is None and doc["extra"] == {"13-45-2025 10:00:00": ""}


def test_whitespace_variants_parse_like_single_spaces():
    assert _doc("RAM 1/2MB    CPU [1%@2]\r\n") == _doc("RAM 1/2MB CPU [1%@2]")


def test_snapshot_value_types_carry_units():
    snap = parse_line(BY_ID["66"])
    assert isinstance(snap, Snapshot)
    assert snap.ram.total_mb == 125749
    assert snap.rails["vin"].max_mw == 87426
    assert snap.cores[0].freq_mhz == 972


# --- not tegrastats at all --------------------------------------------------------


@pytest.mark.parametrize("line", MALFORMED + ["", "   ", b"RAM 1/2MB \xff"])
def test_not_tegrastats_raises_parse_error(line):
    with pytest.raises(ParseError) as err:
        parse_line(line)
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value.line, str)


def test_parse_error_is_exported():
    assert tegrastats_api.ParseError is ParseError and issubclass(ParseError, ValueError)


def test_parser_module_is_pure():
    """No I/O, clock or logging: the parser imports only re, typing and the value types."""
    tree = ast.parse((ROOT / "tegrastats_api" / "parser.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"__future__", "re", "typing", "tegrastats_api.snapshot"}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"open", "print", "input", "time", "logging", "datetime", "os", "sys"}


# --- mutations of real lines (property test) ---------------------------------------


def _check(line):
    try:
        snap = parse_line(line)
    except ParseError:
        return
    doc = snap.to_dict()
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["schema"] == 1
    for value in doc["temperature"].values():
        assert value is None or math.isfinite(value)


@st.composite
def mutated_lines(draw):
    tokens = draw(st.sampled_from(LINES)).split(" ")
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "truncate"]))
        i = draw(st.integers(0, max(0, len(tokens) - 1)))
        if op == "delete" and len(tokens) > 1:
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "insert":
            tokens.insert(i, draw(st.text(min_size=1, max_size=12)))
        elif op == "truncate":
            tokens[i] = tokens[i][: draw(st.integers(0, len(tokens[i])))]
    line = " ".join(tokens)
    cut = draw(st.integers(0, len(line)))
    return line[:cut] if draw(st.booleans()) else line


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_lines())
def test_mutated_real_lines_give_a_snapshot_or_parse_error(line):
    _check(line)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LINES), st.binary(max_size=64), st.integers(0, 400))
def test_random_bytes_in_real_lines(line, noise, at):
    raw = line.encode() [:at] + noise + line.encode()[at:]
    _check(raw)
    _check(raw.decode("utf-8", "replace"))
    _check(raw.decode("latin-1"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    _check(text)
    _check("RAM 1/2MB " + text)


# Readings that may be printed below zero (GRAMMAR.md sections 8, 9), in every form.
_MW = st.integers(-10 ** 6, 10 ** 6)
_RAIL_NAMES = st.from_regex(r"ZZ_[A-Z0-9_]{0,12}", fullmatch=True)


@st.composite
def rail_tokens(draw):
    """(token, expected power entry): ``N cur/avg``, ``N cur`mW`/avg`mW``, ``N c/a/m`` in mW."""
    name = draw(_RAIL_NAMES)
    values = draw(st.lists(_MW, min_size=1, max_size=3))
    unit = "mW" if len(values) != 2 or draw(st.booleans()) else ""
    if len(values) == 1:
        unit = "mW"  # a single value is a rail only with its unit
    token = "%s %s" % (name, "/".join("%d%s" % (v, unit) for v in values))
    expected = {"current": values[0], "average": values[1] if len(values) > 1 else None}
    if len(values) == 3:
        expected["max"] = values[2]
    expected["unit"] = "mW"
    return name, token, expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LINES), rail_tokens())
def test_any_rail_reading_in_any_form_is_a_rail(line, rail):
    name, token, expected = rail
    doc = _doc(line + " " + token)
    assert doc["power"][name.lower()] == expected
    assert name not in doc["extra"]
    assert doc["power"] == dict(_doc(line)["power"], **{name.lower(): expected})


@st.composite
def temperature_tokens(draw):
    """(token, °C or None): as tegrastats prints them, up to 3 decimals, integers bare."""
    thousandths = draw(st.integers(-300_000, 150_000))
    text = "%d" % (thousandths // 1000) if thousandths % 1000 == 0 else (
        "%.3f" % (thousandths / 1000.0)).rstrip("0")
    text = draw(st.sampled_from([text, text, text, "-0", "-0.0", "-256"]))
    current = float(text)
    token = "zz_t@%sC" % text
    if draw(st.booleans()):
        token += "/%sC" % draw(st.sampled_from(["-1", "0", "12.5", "-256"]))
    return token, None if current == -256 else current


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LINES), temperature_tokens())
def test_any_temperature_reading_is_the_printed_value(line, temp):
    token, expected = temp
    doc = _doc(line + " " + token)
    assert doc["temperature"]["zz_t"] == expected
    assert json.dumps(doc["temperature"]["zz_t"]) != "-0.0"  # no negative zero
    assert doc["extra"] == _doc(line)["extra"]


def test_100_kb_line():
    line = LINES[7] + " " + " ".join(LINES * 30)
    assert len(line) > 100_000
    snap = parse_line(line[:100_000])
    assert snap.ram.total_mb == 62841
    assert len(parse_line("RAM 1/2MB " + "9" * 100_000).extra) == 1
