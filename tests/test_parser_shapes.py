"""LineParser (tegrastats_api/shapes.py): the compiled per-shape fast path gives exactly
parse_line's results, on first use and on re-use of a cached shape, for every real line and
for many variants of each (other numbers, other digit counts, signs, ``off``, bad dates,
tokens added and removed, other spacing), and for the simulator's lines of every board.

"Exactly" is checked three ways: Snapshot equality, ``repr`` (types: ``1`` is not ``True``,
``5`` is not ``5.0``) and the encoded JSON bytes (``-0.0`` is not ``0.0``).
"""
from __future__ import annotations

import csv
import gc
import json
import random
import re
from pathlib import Path
from typing import List, Optional, Union

import pytest

from tegrastats_api.energy import EnergyMeter
from tegrastats_api.hub import SnapshotHub, encode_document
from tegrastats_api.parser import TOKEN_RE, ParseError, parse_line
from tegrastats_api.plan import list_boards, load_board
from tegrastats_api.shapes import MAX_SHAPES, LineParser
from tegrastats_api.simulator import SimulatedBoard
from tegrastats_api.snapshot import Snapshot

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "tegrastats" / "samples.tsv"
with SAMPLES.open(encoding="utf-8", newline="") as _f:
    LINES = [row["line"] for row in csv.DictReader(_f, delimiter="\t")]
NUMBER_RE = re.compile(r"[0-9]+")
VALUE_RE = re.compile(r"(?<![A-Za-z_0-9])[0-9]+")  # a number that is not part of a name (GR3D, CV0)


def check(parser: LineParser, line: Union[str, bytes], received_at: Optional[float] = 1764500000.25,
          source: Optional[str] = "tegrastats") -> None:
    """The parser's answer for ``line`` is parse_line's, or both raise the same ParseError."""
    try:
        expected = parse_line(line, received_at, source=source)
    except ParseError as error:
        with pytest.raises(ParseError) as raised:
            parser.parse(line, received_at, source=source)
        assert (str(raised.value), raised.value.line) == (str(error), error.line)
        return
    parsed = parser.parse_deferred(line, received_at, source=source)
    # the energy counter's numbers, read at once: each rail's current_mw, ints
    power = {name: rail.current_mw for name, rail in expected.rails.items()}
    assert repr(parsed.power_mw) == repr(power), line
    # the document first: a compiled shape makes it from the line's groups, no snapshot made
    documents = [parsed.document()]
    got = parsed.snapshot()
    assert got is parsed.snapshot(), line  # built once
    assert got == expected, line
    assert repr(got) == repr(expected), line
    wanted = expected.to_dict()
    documents += [got.to_dict(), parsed.document()]  # to_dict(), and the hub's way again
    assert documents[0] is not documents[-1], line  # a new document each call
    for document in documents:
        assert document == wanted, line
        assert json.dumps(document) == json.dumps(wanted), line
        assert encode_document(document) == encode_document(wanted), line
    # the JSON pushed to clients: of a compiled shape, made from the line's numbers (no
    # document); the standard encoder's bytes of that document, to the byte
    payload = parsed.json()
    assert (payload is None) == (not parsed.compiled), line
    if payload is not None:
        assert payload == json.dumps(wanted, separators=(",", ":")).encode("ascii"), line


def check_twice_each(lines: List[str]) -> LineParser:
    """Each line three times in a row (learn, compile, re-use), then all again in order."""
    parser = LineParser()
    for line in lines:
        for _ in range(3):
            check(parser, line)
    for line in lines:
        check(parser, line)
    return parser


# -- variants of a real line ----------------------------------------------------------------

def _sub_number(line: str, rng: random.Random, make) -> str:
    runs = list(NUMBER_RE.finditer(line))
    if not runs:
        return line
    m = rng.choice(runs)
    return line[:m.start()] + make(m.group(0)) + line[m.end():]


def _token_edit(line: str, rng: random.Random) -> str:
    tokens = line.split(" ")
    i = rng.randrange(len(tokens))
    choice = rng.randrange(5)
    if choice == 0:
        del tokens[i]  # a token (or half of one) removed
    elif choice == 1:
        tokens.insert(i, tokens[i])  # a token repeated (names get _2)
    elif choice == 2:
        tokens.insert(i, rng.choice(["FOO", "FOO 12", "foo@40C", "X_FREQ 5%@300", "NEW 1mW/2mW", "@@", "]"]))
    elif choice == 3:
        tokens[i] = tokens[i] + rng.choice(["", "x", "%", "C", "mW", "/7", ",", "@9"])
    else:
        return rng.choice(["\t", "  ", " \r", "\u00a0"]).join(tokens)  # other spacing
    return " ".join(tokens)


MUTATIONS = [
    lambda s, r: _sub_number(s, r, lambda d: "".join(r.choice("0123456789") for _ in d)),  # same digit count
    lambda s, r: _sub_number(s, r, lambda d: str(r.randrange(10 ** r.randrange(1, 4)))),  # 1 to 3 digits
    lambda s, r: _sub_number(s, r, lambda d: r.choice(["999999999", "9999999999", "99999999999", "1234567890"])),
    lambda s, r: _sub_number(s, r, lambda d: "-" + d),  # a sign where only sensors may have one
    lambda s, r: re.sub(r"@[0-9.]+C", r.choice(["@-256C", "@-0C", "@-0.0C", "@-256.0C", "@0.00001C", "@12345C"]),
                        s, count=r.randrange(1, 4)),
    lambda s, r: re.sub(r" [0-9]+(mW)?/", r.choice([" -398mW/", " -0/", " -1/", " -12345678901/"]), s, count=1),
    lambda s, r: re.sub(r"(?<=[\[,])[0-9]+%@[0-9]+", r.choice(["off", "", " 5%", "5%@", "12345678901%@1"]), s,
                        count=r.randrange(1, 3)),
    lambda s, r: re.sub(r"(?<= )[0-9]+%@(?:\[[0-9,]+\]|[0-9]+)", "off", s, count=1),  # a clock turned off
    lambda s, r: r.choice(["13-45-2025 10:59:22 ", "10-16-2023 24:00:00 ", "00-01-2025 00:00:00 ",
                           "12-31-2025 23:59:60 "]) + re.sub(r"^[0-9-]+ [0-9:]+ ", "", s),
    _token_edit,
]


def variants(line: str, seed: int, count: int = 40) -> List[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = line
        for _ in range(rng.randrange(1, 4)):
            text = rng.choice(MUTATIONS)(text, rng)
        out.append(text)
    return out


def test_every_real_line_is_compiled_and_reused_with_parse_lines_results():
    for line in LINES:
        parser = LineParser()
        for _ in range(4):
            check(parser, line)
        assert len(parser) == 1 and parser.hits == 2, line  # learnt, compiled, then answered twice


@pytest.mark.parametrize("source, received_at", [
    (None, None), ("tegrastats", 0.0), ("replay", 1764500000.9995), ("simulator", 32503680000.5),
    ('a "quoted" \\ source %d %s %%', 1e9 + 0.0004), ("gr\u00e5 \u2028 \U0001f600 \x00\x1f", 1764500000.001),
])
def test_the_json_of_every_real_line_for_any_source_and_time(source, received_at):
    """The text and times a document holds (``source``, ``timestamp``) are written as the
    standard encoder writes them: escapes, ``%`` signs, non-ASCII, no time."""
    for line in LINES:
        parser = LineParser()
        for _ in range(3):
            check(parser, line, received_at, source)
        assert parser.hits == 1, line


@pytest.mark.parametrize("index", range(len(LINES)))
def test_variants_of_a_real_line_give_parse_lines_results(index):
    parser = LineParser()
    line = LINES[index]
    for _ in range(2):
        check(parser, line)  # the real line's shape is now compiled
    for variant in variants(line, seed=index):
        for _ in range(3):  # first use (maybe the real line's shape), then its own shape
            check(parser, variant)
        check(parser, line)
    assert parser.hits > 0


@pytest.mark.parametrize("board", list_boards())
def test_simulated_lines_of_every_board_take_the_fast_path(board):
    parser = LineParser()
    lines = [next(SimulatedBoard(load_board(board), random.Random(7))) for _ in range(1)]
    simulated = SimulatedBoard(load_board(board), random.Random(11))
    lines += [next(simulated) for _ in range(60)]
    for line in lines:
        check(parser, line)
    assert parser.hits >= 58  # two lines to learn the shape; every other one compiled


@pytest.mark.parametrize("index", range(0, len(LINES), 3))
def test_each_token_repeated_or_removed_gives_parse_lines_results(index):
    """A second EMC/GPU/RAM/CPU block, a repeated name (``_2``), a missing token, a word."""
    line = " ".join(LINES[index].split())
    parser = check_twice_each([line])
    tokens, pos = [], 0
    while pos < len(line):
        m = TOKEN_RE.match(line, pos)
        tokens.append(m.group(0).strip())
        pos = m.end()
    for i in range(len(tokens)):
        repeated = " ".join(tokens[:i + 1])
        for edited, cut in ((repeated + " " + " ".join(tokens[i:]), len(repeated) + 1),
                            (" ".join(tokens[:i] + tokens[i + 1:]), 0)):
            for k in (0, 0, 0, 3, 7):  # learn, compile, re-use; then other numbers in that shape
                check(parser, edited[:cut] + renumber(edited[cut:], k))


def renumber(text: str, k: int) -> str:
    """Each digit of the numbers in ``text`` moved by ``k`` (names such as GR3D_FREQ or CV0
    stay): the same shape, other values."""
    return VALUE_RE.sub(lambda m: "".join(str((int(d) + k) % 10) for d in m.group(0)), text)


def test_digit_counts_at_the_bound_match_parse_line():
    """9, 10 and 11 digits in every number of a line: TOKEN_RE takes up to 10."""
    for line in LINES[::6]:
        parser = check_twice_each([line])
        for digits in ("7", "123", "999999999", "9999999999", "99999999999", "0000000000", "00000000001"):
            changed = VALUE_RE.sub(digits, line)
            for _ in range(3):
                check(parser, changed)


def test_a_cached_shape_whose_values_take_another_branch_gives_the_slow_result():
    """An impossible date in a compiled timestamp shape: parse_line keeps it in ``extra``."""
    line = next(line for line in LINES if re.match(r"[0-9]{2}-[0-9]{2}-[0-9]{4} ", line))
    parser = check_twice_each([line])
    hits = parser.hits
    for stamp in ("13-45-2025 10:59:22", "13-16-2023 10:59:22", "00-16-2023 10:59:22", "10-00-2023 10:59:22",
                  "10-32-2023 10:59:22", "10-16-2023 24:59:22", "10-16-2023 10:60:22", "10-16-2023 10:59:61"):
        bad = stamp + line[19:]
        for _ in range(3):
            check(parser, bad)
        assert parse_line(bad).extra.get(stamp) == ""
    assert parser.hits == hits  # each declined by the builder, answered by parse_line
    for stamp in ("10-16-2023 10:59:22", "12-31-2025 23:59:60", "01-01-0000 00:00:00"):  # a leap second is fine
        check(parser, stamp + line[19:])
    assert parser.hits == hits + 3


def test_the_cache_stays_bounded_with_many_shapes():
    base = LINES[0]
    parser = LineParser()
    shapes = [base + " " + " ".join("T%d@40C" % i for i in range(n)) for n in range(3 * MAX_SHAPES)]
    for _ in range(2):
        for line in shapes:
            check(parser, line)
            check(parser, line)
            assert len(parser) <= MAX_SHAPES
            assert len(parser._seen) <= MAX_SHAPES
    assert len(parser) == MAX_SHAPES
    small = LineParser(max_shapes=2)
    for line in shapes[:5] * 3:
        check(small, line)
        assert len(small) <= 2


def test_a_shape_seen_once_is_not_compiled():
    """A number inside an unknown word changes every line: no compilation per line."""
    parser = LineParser()
    for i in range(50):
        check(parser, LINES[0] + " UNKNOWN %d.5" % i)
    assert len(parser) == 0 and parser.hits == 0


def counting_describe(monkeypatch):
    """Count LineParser's calls of shapecode.describe (the costly step of learning a shape)."""
    from tegrastats_api import shapes

    calls = []
    real = shapes.describe

    def counted(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(shapes, "describe", counted)
    return calls


@pytest.mark.parametrize("extra", [" FOO bar7 baz", " UNKNOWN", " GR3D_FREQ 1%@[12345678901]"])
def test_a_shape_that_cannot_be_compiled_is_not_described_on_every_line(extra, monkeypatch):
    """A board whose every line holds a token the fast path does not build (a bare word, an
    11-digit number) gets parse_line's answers without describing each line again: at most
    once per RETRY_DECLINED lines of that rough shape."""
    from tegrastats_api.shapes import RETRY_DECLINED

    calls = counting_describe(monkeypatch)
    parser = LineParser()
    count = 3 * RETRY_DECLINED
    for i in range(count):
        line = re.sub(r"[0-9]+", str(100 + i), LINES[0], count=1) + extra  # numbers change, the shape not
        check(parser, line)
    assert parser.hits == 0 and len(parser) == 0
    assert 1 <= len(calls) <= count // RETRY_DECLINED + 1


def test_a_shape_declined_for_a_passing_value_is_compiled_soon_after(monkeypatch):
    """A line declined for its values (an impossible date, a number too long) does not keep its
    well-formed neighbours of the same rough shape off the fast path for long."""
    from tegrastats_api.shapes import RETRY_DECLINED

    stamped = [line for line in LINES if re.match(r"[0-9]{2}-[0-9]{2}-[0-9]{4} ", line)][0]
    bad_date = "13" + stamped[2:]
    parser = LineParser()
    check(parser, bad_date)
    for _ in range(RETRY_DECLINED + 3):
        check(parser, stamped)
    assert len(parser) == 1 and parser.hits > 0
    calls = counting_describe(monkeypatch)
    for _ in range(10):
        check(parser, stamped)
    assert calls == [], "a compiled shape's lines are not described again"


def test_bytes_empty_and_foreign_text_are_parse_lines_answers():
    parser = check_twice_each([LINES[-1]])
    for line in (LINES[-1].encode("utf-8"), b"\xff\xfe RAM 1/2MB", b"", "", "   ", "hello world", "SWAP 1/2MB",
                 LINES[-1].replace("RAM", "ROM"), LINES[-1] + " \u00e9t\u00e9@40C"):
        for _ in range(3):
            check(parser, line)
    for received_at, source in ((None, None), (0.0, "replay"), (1e9 + 0.9995, "x\u00e9")):
        check(parser, LINES[-1], received_at, source)
    hits = parser.hits
    assert parser.parse(LINES[-1], 5.0, source="s") == parse_line(LINES[-1], 5.0, source="s")
    assert parser.hits == hits + 1


def test_the_document_maker_of_a_compiled_shape_is_used_and_matches():
    """Every real line's compiled shape makes its document; the numbers are the line's."""
    for line in LINES:
        parser = check_twice_each([line])
        for k in (1, 5):
            changed = renumber(line, k)
            parsed = parser.parse_deferred(changed, 7.5, source="tegrastats")
            if not parsed.compiled:  # the renumbered line is another shape (a date, a bound)
                continue
            assert parsed.document() == parse_line(changed, 7.5, source="tegrastats").to_dict()
            assert parsed.document() is not parsed.document()  # a fresh document each time


def snapshots_alive() -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, Snapshot))


def test_the_hub_uses_a_line_parser_and_publishes_parse_lines_documents():
    """Each sample's document and JSON are parse_line's; of a compiled shape they are made
    without a snapshot, and a snapshot is made only when asked for (hub.latest), once."""
    clock = iter(range(1764500000, 1764500100))
    hub = SnapshotHub("tegrastats", clock=lambda: float(next(clock)))
    board = SimulatedBoard(load_board("agx-orin"), random.Random(3))
    lines = [next(board) for _ in range(10)]
    for i, line in enumerate(lines):
        before = snapshots_alive()
        hub.feed_line(line)
        sample = hub.history[-1]
        assert sample.parsed.compiled == (i >= 2)  # compiled from the third line on
        expected = parse_line(line, sample.received_at, source="tegrastats").to_dict()
        if i % 2:
            assert hub.latest_json == encode_document(expected)
        assert hub.latest_document == expected
        # (parse_line's snapshot is gone) the hub made one only for the lines it read with
        # parse_line (the first two), none for the document of a compiled shape
        assert snapshots_alive() - before == (1 if i < 2 else 0), i
        assert hub.latest == parse_line(line, sample.received_at, source="tegrastats")
        assert hub.latest is hub.latest
    assert hub.parser.hits == 8
    # an older sample never asked for: its snapshot and document are parse_line's
    hub.feed_line(lines[0])
    hub.feed_line(lines[1])
    older = hub.history[-2]
    assert older._document is None
    assert older.document == parse_line(lines[0], older.received_at, source="tegrastats").to_dict()
    assert older.snapshot == parse_line(lines[0], older.received_at, source="tegrastats")


def test_a_hub_nobody_asks_makes_no_snapshot_and_counts_energy_all_the_same():
    """At rest (no client, no request) a compiled shape's line is matched, checked and its
    rails' power counted; no snapshot or document is made. The energy totals are those of
    parse_line's snapshots' rails."""
    clock = iter(range(1764500000, 1764500100))
    hub = SnapshotHub("tegrastats", clock=lambda: float(next(clock)))
    board = SimulatedBoard(load_board("agx-orin"), random.Random(5))
    lines = [next(board) for _ in range(30)]
    before = snapshots_alive()
    for line in lines:
        hub.feed_line(line)
    assert snapshots_alive() - before == 2  # the two lines parse_line read before the shape was compiled
    assert all(sample._document is None and sample._payload is None for sample in hub.history)
    (_key, shape), = hub.parser._shapes
    assert shape._payload is None  # its JSON maker is made for the first client, not before
    assert hub.latest_json == encode_document(hub.latest_document) and shape._payload is not None
    expected = EnergyMeter(max_gap_s=hub.stale_after_s)
    for sample, line in zip(hub.history, lines):
        snapshot = parse_line(line, sample.received_at)
        expected.add(sample.received_at, {name: rail.current_mw for name, rail in snapshot.rails.items()})
    assert hub.energy.totals_j == expected.totals_j != {}
    assert all(total > 0 for total in expected.totals_j.values())


def test_a_shape_without_a_json_maker_has_its_documents_encoded(monkeypatch):
    """Should the template not be made for a shape, its samples' JSON is the document's,
    encoded: the same bytes."""
    import tegrastats_api.shapes as shapes_module

    monkeypatch.setattr(shapes_module, "payload_code", lambda code: None)
    hub = SnapshotHub("tegrastats", clock=lambda: 1764500000.5)
    for line in [LINES[-1]] * 4:
        hub.feed_line(line)
    assert hub.parser.hits == 2 and hub.history[-1].parsed.json() is None
    assert hub.latest_json == encode_document(parse_line(LINES[-1], 1764500000.5, source="tegrastats").to_dict())


def test_other_whitespace_takes_the_compiled_shape_of_the_normalised_line():
    """Trailing line ends, leading spaces, tabs, runs of spaces, a no-break space, a vertical
    tab: parse_line reads ``" ".join(line.split())``, and so does the compiled shape."""
    for line in LINES[::5]:
        parser = check_twice_each([line])
        hits = parser.hits
        spaced = [line + "\n", line + " \r\n", "  " + line, line.replace(" ", "\t"), line.replace(" ", "  "),
                  line.replace(" ", "\u00a0"), line.replace(" ", " \x0b"), line + "\u2028"]
        for variant in spaced:
            check(parser, variant)
        assert parser.hits == hits + len(spaced)
        check(parser, line.replace(" ", "\u200b"))  # a zero-width space is no space: another line


def test_the_json_template_writes_any_key_and_constant_as_the_standard_encoder():
    """Keys and constants come from the line's names: a ``%`` or a quote in one is text of the
    template, not a field of the format (no board prints one today)."""
    from tegrastats_api.shapecode import NAMESPACE, _json_code

    code = "{'a%d': n[0], 'q\"%%s': [None, True, 'x%s', 2, n[1], {}], 'f': t0, 's': g, 'e': {'\\u00e5': 1.5}}"
    namespace = dict(NAMESPACE, n=(7, -3), t0=-0.0, g='%s "x"')
    wanted = eval(code, dict(namespace))  # noqa: S307 - our own literal
    assert eval(_json_code(code), namespace) == json.dumps(wanted, separators=(",", ":")).encode("ascii")  # noqa: S307
