"""``fields=`` projections and the ``/api/summary`` document, on every real sample (pure)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- merging: every path kept, lists element by element, one answer for no path ----------


def test_paths_through_one_list_merge_element_by_element():
    doc = _doc("8")  # AGX Orin: 12 cores
    out = select(doc, parse_fields("cpu.cores.usage,cpu.cores.freq"))
    assert out["cpu"]["cores"] == [{"usage": c["usage"], "freq": c["freq"]} for c in doc["cpu"]["cores"]]
    assert list(out["cpu"]) == ["cores"]
    swapped = select(doc, parse_fields("cpu.cores.freq,cpu.cores.usage"))
    assert swapped["cpu"]["cores"] == out["cpu"]["cores"]
    assert list(swapped["cpu"]["cores"][0]) == ["freq", "usage"]  # order of first mention
    three = select(doc, parse_fields("cpu.cores.id,cpu.usage,cpu.cores.online,cpu.cores.usage"))
    assert three["cpu"] == {"cores": [{"id": c["id"], "online": c["online"], "usage": c["usage"]}
                                      for c in doc["cpu"]["cores"]], "usage": doc["cpu"]["usage"]}


def test_offline_cores_keep_their_place():
    doc = _doc("6")  # TX2: one online core, five off
    out = select(doc, parse_fields("cpu.cores.online,cpu.cores.freq"))
    assert out["cpu"]["cores"] == [{"online": c["online"], "freq": c["freq"]} for c in doc["cpu"]["cores"]]
    assert len(out["cpu"]["cores"]) == len(doc["cpu"]["cores"])


@pytest.mark.parametrize("texts,expected", [
    (["cpu", "cpu,cpu.cores", "cpu.cores,cpu", "cpu.cores.usage,cpu", "cpu,cpu.usage,cpu.cores.freq"], ("cpu",)),
    (["cpu.cores", "cpu.cores,cpu.cores.usage", "cpu.cores.usage,cpu.cores", "cpu.cores.freq,cpu.cores,cpu.cores.id"],
     ("cpu", "cores")),
    (["memory", "memory,memory", "memory , memory,memory.ram.used", "memory.swap.used,memory"], ("memory",)),
])
def test_a_shorter_path_covers_the_longer_ones_in_any_order(texts, expected):
    doc = _doc("8")
    whole = doc
    for key in expected:
        whole = whole[key]
    for text in texts:
        assert parse_fields(text) == (expected,), text
        out = select(doc, parse_fields(text))
        inner = out
        for key in expected:
            inner = inner[key]
        assert inner == whole, text
        # the raw (unnormalized) paths select the same thing, in the same key order
        raw = [tuple(name.strip().split(".")) for name in text.split(",")]
        assert json.dumps(select(doc, raw)) == json.dumps(out), text


def test_duplicates_count_once():
    assert parse_fields("memory,memory") == (("memory",),)
    assert parse_fields("cpu.usage, cpu.usage ,gpu,cpu.usage") == (("cpu", "usage"), ("gpu",))
    doc = _doc("8")
    assert select(doc, [("memory",), ("memory",)]) == {"timestamp": doc["timestamp"], "memory": doc["memory"]}


@pytest.mark.parametrize("text", [None, "", " ", ",", ",,,", " , ", " ,, , ", "\t,\t"])
def test_no_path_at_all_is_the_whole_document(text):
    assert parse_fields(text) is None


def test_empty_items_between_paths_are_skipped():
    assert parse_fields(",cpu.usage,,gpu.usage,") == parse_fields("cpu.usage,gpu.usage")


def test_keys_follow_the_first_mention_after_timestamp():
    doc = _doc("8")
    out = select(doc, parse_fields("gpu.usage,cpu.usage,memory.ram.total,gpu.freq,memory.ram.used"))
    assert list(out) == ["timestamp", "gpu", "cpu", "memory"]
    assert list(out["gpu"]) == ["usage", "freq"] and list(out["memory"]["ram"]) == ["total", "used"]
    assert parse_fields("gpu.usage,cpu.usage,gpu.freq") == (("gpu", "usage"), ("gpu", "freq"), ("cpu", "usage"))


SYNTHETIC = {
    "timestamp": "t",
    "grid": [[{"x": 1, "y": 2, "z": 3}, {"x": 4}], [], [{"y": 5}, None, {"q": 0}]],
    "racks": [{"rail": {"current": 1, "average": 2, "unit": "mW"}, "name": "a"},
              {"rail": {"current": 3}, "name": "b"},
              {"name": "c"},
              {"rail": None, "name": "d"}],
}


def test_nested_lists_merge_element_by_element():
    out = select(SYNTHETIC, [("grid", "x"), ("grid", "y")])
    # every element keeps its place: one that holds none of the paths is {} (or null)
    assert out["grid"] == [[{"x": 1, "y": 2}, {"x": 4}], [], [{"y": 5}, None, {}]]


def test_paths_through_a_list_into_a_dict_merge():
    out = select(SYNTHETIC, [("racks", "rail", "current"), ("racks", "name"), ("racks", "rail", "unit")])
    assert out["racks"] == [
        {"rail": {"current": 1, "unit": "mW"}, "name": "a"},
        {"rail": {"current": 3}, "name": "b"},
        {"name": "c"},
        {"rail": None, "name": "d"},
    ]
    assert select(SYNTHETIC, [("racks", "rail", "average")])["racks"] == [
        {"rail": {"average": 2}}, {}, {}, {"rail": None}]
    assert select(SYNTHETIC, [("racks", "rail"), ("racks", "rail", "current")])["racks"] == [
        {"rail": r["rail"]} if "rail" in r else {} for r in SYNTHETIC["racks"]]


def _leaf_paths(doc):
    paths = set()

    def walk(value, prefix):
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(inner, prefix + (key,))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                walk(item, prefix)
        if prefix:
            paths.add(prefix)

    walk(doc, ())
    return sorted(paths)


def _follow(value, path):
    """What ``path`` reaches in ``value`` (lists element by element), or KeyError."""
    for depth, key in enumerate(path):
        if isinstance(value, list):
            return [_follow(item, path[depth:]) for item in value]
        if value is None:
            return None
        value = value[key]
    return value


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_path_asked_for_is_in_the_answer_whatever_else_is(data):
    row = data.draw(st.sampled_from(ROWS))
    doc = parse_line(row["line"], 0.0, source="tegrastats").to_dict()
    paths = data.draw(st.lists(st.sampled_from(_leaf_paths(doc)), min_size=1, max_size=8))
    out = select(doc, paths)
    for path in paths:
        assert _follow(out, path) == _follow(doc, path), path
    # nothing else: every key of the answer is on some path asked for (or the timestamp)
    for path in _leaf_paths(out):
        assert path == ("timestamp",) or any(path[:len(p)] == p or p[:len(path)] == path for p in paths), path
    # the order and repeats of the paths change nothing but the key order
    assert select(doc, list(reversed(paths)) + paths) == out
    text = ",".join(".".join(p) for p in paths)
    assert json.dumps(select(doc, parse_fields(text))) == json.dumps(out)
