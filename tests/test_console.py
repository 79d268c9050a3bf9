"""The monitor's screen (tegrastats_api/console.py), pure: every recorded board at many
widths, the dashboard's temperature levels and input-power rule, value formats, the
header's time. The same rules as static/app.js, read from that file."""
from __future__ import annotations

import collections
import copy
import re
import time
from pathlib import Path

import pytest

from tegrastats_api import parse_line
from tegrastats_api.console import Header, render, sample_time, text_of
from tegrastats_api.feed import REFUSED_RETRY_S, RETRY_S
from tegrastats_api.summary import HOT_C, IGNORED_SENSORS, INPUT_RAILS, WARN_C

TESTS = Path(__file__).parent
APP_JS = TESTS.parent / "static" / "app.js"
ROWS = [row.split("\t") for row in (TESTS / "fixtures" / "tegrastats" / "samples.tsv").read_text().splitlines()[1:]]
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
WIDTHS = (24, 33, 40, 59, 60, 80, 97, 140, 211)  # every name of a recorded board fits in 24
ORIN_NANO = ("11-15-2024 08:38:09 RAM 6185/7620MB (lfb 8x2MB) SWAP 851/3810MB (cached 1MB) "
             "CPU [15%@729,11%@729,14%@729,13%@729,11%@729,8%@729] EMC_FREQ 43%@2133 GR3D_FREQ 63%@[621] "
             "NVDEC off NVJPG off VIC off OFA off APE 200 cpu@53.968C soc2@52.437C soc0@50.75C gpu@53.343C "
             "tj@53.968C soc1@51.656C VDD_CPU_GPU_CV 4667mW/4667mW VDD_SOC 812mW/812mW VDD_IN 12479mW/12479mW")


def _doc(line: str, received_at: float = 1_760_000_000.25) -> dict:
    return parse_line(line, received_at, source="tegrastats").to_dict()


def _numbers(lines) -> collections.Counter:
    return collections.Counter(NUMBER.findall(text_of(lines)))


def _spans(lines):
    return [span for line in lines for span in line]


def _field_style(lines, text):
    """The style of the span that holds ``text`` (a temperature value, say)."""
    found = [span.style for span in _spans(lines) if text in span.text]
    assert found, "%r not on the screen:\n%s" % (text, text_of(lines))
    return found[0]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_every_board_fits_any_width_and_no_number_is_split(row):
    doc = _doc(row[-1])
    header = Header("127.0.0.1:58090", "reconnecting\u2026 (the server closed the connection; retry in 2 s)",
                    "warn", "q quits")
    wide = render(doc, 1000, colour=True, header=header)
    assert len(text_of(wide).splitlines()) >= 6  # header, bars, CPU, MEM, GPU, TEMP (POWER where printed)
    for width in WIDTHS:
        for colour in (True, False):
            lines = render(doc, width, colour=colour, header=header)
            assert all(sum(len(s.text) for s in line) <= width for line in lines), (width, text_of(lines))
            # the same numbers, whole, at every width: none was cut or split across lines
            assert _numbers(lines) == _numbers(wide), (width, text_of(lines))
    for width in (10, 17):  # narrower than some names: those are cut, the screen still fits
        assert all(sum(len(s.text) for s in line) <= width for line in render(doc, width, header=header))


def test_lines_follow_the_width():
    doc = _doc(ROWS[7][-1])  # AGX Orin, 12 cores
    narrow, wide = (text_of(render(doc, w)).splitlines() for w in (60, 140))
    assert max(map(len, narrow)) <= 60 < max(map(len, wide)) <= 140
    assert len(narrow) > len(wide)
    assert max(map(len, text_of(render(doc, 80)).splitlines())) > 60  # not a fixed 60 or 80 either


def test_temperatures_take_the_dashboards_levels():
    doc = _doc(ORIN_NANO)
    doc["temperature"] = {"a": 44.0, "b": 69.94, "c": 70.0, "d": 84.96, "e": 85.0, "f": 88.3, "pmic": 100.0,
                          "g": None}
    lines = render(doc, 200, colour=True)
    values = [(s.text, s.style) for s in _spans(lines) if s.style in ("ok", "warn", "hot")]
    # 84.96 shows as 85.0 but is below 85: the level is the value's, as on the dashboard
    assert values == [("44.0 \u00b0C", "ok"), ("69.9 \u00b0C", "ok"), ("70.0 \u00b0C", "warn"),
                      ("85.0 \u00b0C", "warn"), ("85.0 \u00b0C", "hot"), ("88.3 \u00b0C", "hot")]
    assert _field_style(lines, "pmic 100.0 \u00b0C (fixed)") == "dim"
    assert _field_style(lines, "g off") == "dim"


def test_without_colour_no_style_and_the_levels_in_words():
    doc = _doc(ORIN_NANO)
    doc["temperature"] = {"cpu": 88.3, "gpu": 72.5, "soc0": 44.0, "pmic": 100.0}
    header = Header("h:1", "live", "good", "q quits")
    lines = render(doc, 120, colour=False, header=header, stale=True)
    assert {s.style for s in _spans(lines)} == {""}
    text = text_of(lines)
    assert "cpu 88.3 \u00b0C (hot)" in text and "gpu 72.5 \u00b0C (warm)" in text
    assert "soc0 44.0 \u00b0C  " in text and "pmic 100.0 \u00b0C (fixed)" in text
    assert "(warm)" not in text_of(render(doc, 120, colour=True))


def test_stale_figures_are_greyed():
    doc = _doc(ORIN_NANO)
    lines = render(doc, 120, colour=True, header=Header(status="reconnecting\u2026", level="warn"), stale=True)
    assert {s.style for s in _spans(lines[1:]) if s.text.strip()} == {"dim"}
    assert _field_style(lines, "reconnecting") == "warn"


def test_power_in_watts_with_milliwatts_below_one_watt_and_the_input_first():
    doc = _doc(ORIN_NANO)
    doc["power"]["vdd_soc"]["current"] = 812
    doc["power"]["vdd_cpu_gpu_cv"]["current"] = 999
    power = next(line for line in text_of(render(doc, 200)).splitlines() if line.startswith("POWER"))
    assert power == "POWER input 12.5 W (vdd_in)  vdd_cpu_gpu_cv 999 mW  vdd_soc 812 mW"
    doc["power"]["vdd_in"]["current"] = 4667
    assert "input 4.67 W (vdd_in)" in text_of(render(doc, 200))


@pytest.mark.parametrize("rail", INPUT_RAILS)
def test_each_input_rail_comes_first(rail):
    doc = _doc(ORIN_NANO)
    power = doc["power"]
    power[rail] = power.pop("vdd_in")
    doc["power"] = {"vdd_soc": power["vdd_soc"], rail: power[rail], "vdd_cpu_gpu_cv": power["vdd_cpu_gpu_cv"]}
    fields = re.split(r"\s{2,}", next(line for line in text_of(render(doc, 300)).splitlines()
                                      if line.startswith("POWER"))[6:])
    assert fields[0] == "input 12.5 W (%s)" % rail
    assert sum(f.startswith(rail + " ") for f in fields) == 0  # not twice


def test_without_an_input_rail_the_input_is_the_sum():
    doc = _doc(ROWS[7][-1])  # AGX Orin JetPack 6: no VDD_IN
    assert "POWER input 11.0 W (sum of 4 rails)" in text_of(render(doc, 200))
    doc["power"] = {}
    assert "POWER" not in text_of(render(doc, 200))


def test_temperatures_have_one_decimal_and_degrees():
    for row in ROWS:
        doc = _doc(row[-1])
        temp_lines = [line for line in text_of(render(doc, 400)).splitlines() if line.startswith("TEMP")]
        for name, value in doc["temperature"].items():
            shown = "%s off" % name if value is None else "%s %.1f \u00b0C" % (name, value)
            assert shown in temp_lines[0], (row[0], shown, temp_lines)


def test_the_header_time_has_one_format_whatever_the_source():
    board_clock = _doc(ROWS[7][-1], received_at=1_760_000_000.25)  # source_time 2025-11-04T01:46:53
    no_board_clock = _doc(ROWS[0][-1], received_at=1_760_000_000.25)  # JetPack 4: no source_time
    assert board_clock["source_time"] and not no_board_clock["source_time"]
    expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_760_000_000))
    for doc in (board_clock, no_board_clock, dict(board_clock, source="simulator"), dict(board_clock, source="replay")):
        assert sample_time(doc) == expected
        assert expected in text_of(render(doc, 80)).splitlines()[0]
    only_board = dict(board_clock, timestamp=None)
    assert sample_time(only_board) == "2025-11-04 01:46:53"
    assert sample_time(dict(only_board, source_time=None)) == "\u2014"


def test_cores_engines_and_memory():
    doc = _doc(ROWS[5][-1])  # TX2 with 5 of 6 cores off
    text = text_of(render(doc, 200, colour=True))
    assert "1:off" in text
    styles = {s.text: s.style for s in _spans(render(doc, 200, colour=True))}
    assert styles["1:off"] == "dim"
    doc = _doc(ORIN_NANO)
    text = text_of(render(doc, 200))
    assert "RAM 6.0 GB of 7.4 GB" in text and "SWAP 851 MB of 3.7 GB" in text
    assert "NVDEC off" in text and "APE 200 MHz" in text and "GPU 63% 621 MHz" in text
    loads = text.splitlines()[1]
    assert re.search(r"CPU  \[\|+ *\]    12%", loads) and re.search(r"GPU  \[\|+ *\]    63%", loads)


def test_no_sample_yet_shows_the_header_alone():
    lines = render(None, 80, colour=True, header=Header("127.0.0.1:58090", "connecting\u2026", "warn", "q quits"))
    assert text_of(lines) == "tegrastats-api  127.0.0.1:58090  connecting\u2026  q quits"


def test_a_field_wider_than_the_screen_breaks_at_its_spaces():
    doc = _doc(ORIN_NANO)
    doc["temperature"] = {"a_very_long_sensor_name": 91.25}
    lines = render(doc, 20, colour=True)
    text = text_of(lines)
    assert "91.2 \u00b0C" in text or "91.3 \u00b0C" in text
    assert all(len(line) <= 20 for line in text.splitlines())


def test_the_document_is_not_changed():
    doc = _doc(ORIN_NANO)
    before = copy.deepcopy(doc)
    render(doc, 50, colour=True, stale=True)
    assert doc == before


# --- the same rules as the dashboard ---------------------------------------------------------


def _js_constant(name):
    match = re.search(r"\b%s\s*[:=]\s*([^;,\n]+(?:,[^;\n]+)*?)[;,]?\s*(?://.*)?$" % name, APP_JS.read_text(), re.M)
    assert match, "%s not in static/app.js" % name
    return match.group(1).strip()


def test_the_monitor_keeps_the_dashboards_rules():
    assert float(_js_constant("WARN_C")) == WARN_C and float(_js_constant("HOT_C")) == HOT_C
    assert re.findall(r'"(\w+)"', _js_constant("INPUT_RAILS")) == list(INPUT_RAILS)
    assert re.findall(r'"(\w+)"', _js_constant("FIXED_SENSORS")) == list(IGNORED_SENSORS)
    assert float(_js_constant("REFUSED_RETRY_MS")) / 1000 == REFUSED_RETRY_S
    assert (float(_js_constant("reconnectionDelay")) / 1000, float(_js_constant("reconnectionDelayMax")) / 1000) \
        == RETRY_S
