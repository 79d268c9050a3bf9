"""``fields=`` projections and the ``/api/summary`` document, on every real sample (pure)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tegrastats_api import parse_line
from tegrastats_api.fields import FieldsError, parse_fields, select
from tegrastats_api.summary import MAX_BYTES, input_power_mw, summarize

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tegrastats"
with (FIXTURES / "samples.tsv").open(encoding="utf-8", newline="") as _f:
    ROWS = list(csv.DictReader(_f, delimiter="\t"))
BY_ID = {row["id"]: row["line"] for row in ROWS}


def _doc(sample_id: str, source: str = "tegrastats") -> dict:
    return parse_line(BY_ID[sample_id], 1764480000.123, source=source).to_dict()


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_summary_fits_256_bytes_with_the_longest_values(row):
    doc = parse_line(row["line"], 4102444799.999, source="simulator").to_dict()
    text = json.dumps(summarize(doc), separators=(",", ":"))
    assert len(text.encode()) <= MAX_BYTES


def test_summary_keys_and_values_agx_orin():
    s = summarize(_doc("8"))
    assert list(s) == ["timestamp", "source", "cpu", "gpu", "ram_used", "ram_total", "swap_used",
                       "temp_max", "temp_max_sensor", "power_mw"]
    assert (s["cpu"], s["gpu"], s["ram_used"], s["ram_total"], s["swap_used"]) == (25.1, 31, 7822, 62841, 0)
    assert (s["temp_max"], s["temp_max_sensor"]) == (50.281, "cpu")
    # AGX Orin prints no input rail: the sum of its rails.
    assert s["power_mw"] == 3188 + 2390 + 4614 + 802
    assert s["timestamp"] == "2025-11-30T05:20:00.123Z" and s["source"] == "tegrastats"


@pytest.mark.parametrize("sample_id,rail", [("21", "vdd_in"), ("27", "pom_5v_in"), ("64", "vin"), ("5", "vdd_in")])
def test_power_is_the_input_rail_when_printed(sample_id, rail):
    doc = _doc(sample_id)
    assert summarize(doc)["power_mw"] == doc["power"][rail]["current"]


def test_power_null_without_rails_and_pmic_ignored():
    doc = _doc("35")  # TX2 NX without rails; PMIC@50C is the hottest "sensor"
    s = summarize(doc)
    assert s["power_mw"] is None and input_power_mw({}) is None
    assert s["temp_max_sensor"] != "pmic" and s["temp_max"] == 50.5
    orin_jp5 = summarize(_doc("28"))  # AGX Orin JP5: -256C sensors are null and ignored
    assert orin_jp5["temp_max"] == 44.562 and orin_jp5["temp_max_sensor"] == "cpu"


def test_summary_of_old_tx1_without_temperatures_or_swap():
    s = summarize(_doc("17"))
    assert s["temp_max"] is None and s["temp_max_sensor"] is None and s["power_mw"] is None
    assert summarize(_doc("15"))["swap_used"] is None  # no SWAP printed
    assert summarize(_doc("67"))["gpu"] is None  # Thor prints no GR3D percent


def test_select_keeps_the_nested_shape_and_timestamp():
    doc = _doc("8")
    out = select(doc, parse_fields("cpu.usage,gpu.usage,temperature.tj"))
    assert out == {"timestamp": doc["timestamp"], "cpu": {"usage": 25.1}, "gpu": {"usage": 31},
                   "temperature": {"tj": 50.281}}


def test_select_into_lists_maps_and_null_sections():
    doc = _doc("6")  # TX2: one online core, EMC, no iram
    out = select(doc, parse_fields("cpu.cores.usage,memory.iram.used,power.vdd_in,engines.ape.freq"))
    assert out["cpu"]["cores"] == [{"usage": 2}] + [{"usage": None}] * 5
    assert out["memory"] == {"iram": None}
    assert out["power"] == {"vdd_in": {"current": 2003, "average": 2658, "unit": "mW"}}
    assert out["engines"] == {"ape": {"freq": 150}}


def test_paths_the_board_does_not_print_are_left_out():
    out = select(_doc("64"), parse_fields("temperature.gpu,gpu.freq,mts.fg"))
    assert out == {"timestamp": "2025-11-30T05:20:00.123Z", "gpu": {"freq": []}}


def test_overlapping_paths_merge():
    doc = _doc("8")
    out = select(doc, parse_fields("memory.ram.used,memory.ram.total,memory.swap"))
    assert out["memory"] == {"ram": {"used": 7822, "total": 62841}, "swap": doc["memory"]["swap"]}
    assert select(doc, parse_fields("cpu,cpu.usage"))["cpu"] == doc["cpu"]


@pytest.mark.parametrize("text,bad", [
    ("cpu.bogus", ["cpu.bogus"]),
    ("foo,cpu.usage,bar.baz", ["foo", "bar.baz"]),
    ("memory.ram.used.x", ["memory.ram.used.x"]),
    ("cpu..usage", ["cpu..usage"]),
    ("power.vdd_in.volts", ["power.vdd_in.volts"]),
])
def test_unknown_paths_are_named(text, bad):
    with pytest.raises(FieldsError) as err:
        parse_fields(text)
    assert err.value.paths == bad
    assert all(name in str(err.value) for name in bad)


def test_empty_fields_means_the_whole_document():
    assert parse_fields(None) is None and parse_fields("  ") is None
    assert parse_fields("cpu.usage,cpu.usage") == (("cpu", "usage"),)


def test_every_leaf_of_every_real_document_is_a_known_path():
    def leaves(value, prefix):
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                yield from leaves(inner, prefix + (key,))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield from leaves(value[0], prefix)
        else:
            yield prefix

    for row in ROWS:
        doc = parse_line(row["line"], 0.0, source="tegrastats").to_dict()
        for path in leaves(doc, ()):
            if path:
                assert parse_fields(".".join(path)) == (path,)
                assert select(doc, [path]) != {"timestamp": doc["timestamp"]} or path == ("timestamp",)
