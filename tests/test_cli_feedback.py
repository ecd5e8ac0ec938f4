"""One behaviour for every command: help shows defaults, -o is where results go and is required
where they would land in the current folder, -v/--quiet, library warnings as one line, step lines
and a warning on long or wasteful steps (the Sentinel-1 stack)."""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest

from asmspotter.cli import build_parser, main
from tests.conftest import S1_DIR
from tests.real_parts import missing
from tests.service_support import make_tile

OUTPUT_DESTS = {"out", "output"}


def _leaves(parser: argparse.ArgumentParser, prefix: str = "asmspotter"):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, f"{prefix} {name}")


LEAVES = list(_leaves(build_parser()))


def test_every_command_is_listed():
    names = {name for name, _ in LEAVES}
    assert {"asmspotter detect", "asmspotter fetch", "asmspotter monitor run"} <= names


@pytest.mark.parametrize("name, parser", LEAVES, ids=[n for n, _ in LEAVES])
def test_help_shows_defaults_and_output_is_o(name, parser):
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        if action.default not in (None, False, [], (), argparse.SUPPRESS) and not isinstance(
            action, argparse._HelpAction | argparse._VersionAction
        ):
            shown = action.default if isinstance(action.default, list) else [action.default]
            flat = " ".join(text.split())
            missing = [str(v) for v in shown if str(v) not in flat]
            assert not missing, f"{name}: default of {action.option_strings} not in help"
        if action.dest in OUTPUT_DESTS:
            assert "-o" in action.option_strings, f"{name}: {action.option_strings}"
            assert action.default is None or name == "asmspotter demo", (
                f"{name}: writes to {action.default!r} in the current folder unless told"
            )
    assert "-q, --quiet" in text or "--quiet" in text, name


def test_detect_without_o_writes_nothing_here(tmp_path, monkeypatch, capsys):
    # Before: `detect TILE` wrote (and overwrote) ./sites.geojson.
    tile, _ = make_tile(tmp_path / "t.tif", 32, [])
    monkeypatch.chdir(tmp_path)
    assert main(["detect", str(tile), "--local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-o/--out" in err[0] and err[0].startswith("error [INVALID_ARGUMENT]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tif"]


def test_library_warnings_are_one_line(monkeypatch, capsys):
    def noisy(args):
        warnings.warn("invalid value encountered\n  in make_valid", RuntimeWarning, stacklevel=1)
        return 0

    monkeypatch.setattr("imagery.cli._inspect", noisy)  # registered when the parser is built
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["inspect", "x"]) == 0
    err = capsys.readouterr().err
    assert err == "warning: invalid value encountered in make_valid [RuntimeWarning]\n"


def test_stack_says_what_it_does_and_quiet_silences_it(tmp_path, capsys):
    tile, _ = make_tile(tmp_path / "t.tif", 64, [])
    assert main(["stack", str(tile), "-o", str(tmp_path / "a.tif")]) == 0
    err = capsys.readouterr().err
    assert "stack: 64 x 64 px, 6 bands at 10 m" in err and "writing the cloud-optimised" in err
    assert main(["stack", str(tile), "-o", str(tmp_path / "b.tif"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_sentinel1_stack_finer_than_its_source_is_flagged(tmp_path, capsys):
    # Before: a 10 m stack of the decimated GRD sat at 100 % for minutes writing gigabytes,
    # without a word. 100 m keeps the test short; the source spacing is about 200 m.
    if not S1_DIR.is_dir():
        missing(f"{S1_DIR} is absent")
    out = tmp_path / "s1.tif"
    assert main(["stack", str(S1_DIR), "-o", str(out), "--resolution", "100"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "times the source's pixels" in warning[0]
    spacing = int(warning[0].split("--resolution ")[1].split()[0])
    assert 150 <= spacing <= 300
    assert np.isfinite(spacing)


def test_detect_shows_progress_per_tile(tiny_bundle, tmp_path, monkeypatch, capsys):
    # Before: 20-30 s per large tile without a sign of life. Bars are drawn on a terminal;
    # ASMSPOTTER_PROGRESS=1 forces them here.
    monkeypatch.setenv("ASMSPOTTER_PROGRESS", "1")
    tile, _ = make_tile(tmp_path / "t.tif", 160, [])
    out = tmp_path / "s.geojson"
    assert main(["detect", str(tile), "--local", "--bundle", str(tiny_bundle), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "t.tif" in err and "window" in err and "100%" in err
    assert main(["detect", str(tile), "--local", "--bundle", str(tiny_bundle), "-o", str(out),
                 "--quiet"]) == 0  # fmt: skip
    assert "window" not in capsys.readouterr().err
