"""Every documented `asmspotter` command, with natural mistakes: one line, a reason, no traceback.

The commands come from the docs themselves (``tests/docs_support.py``), so a command added to a
document is checked too. Mistakes: an option that does not exist, a word where a number goes, an
input file that is not there (each input in turn), and the same PNG where a tile goes (the same
reason, NOT_A_GEOTIFF, from every command that reads tiles). Each must exit 2 with exactly one
stderr line ``error [REASON]: ...`` and no traceback, before any server or model is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asmspotter.cli import main
from imagery.errors import Reason
from tests.docs_support import asmspotter_commands

# Options whose value names something the command reads (the rest are outputs or addresses).
INPUT_OPTIONS = {
    "--bundle", "--config", "--data", "--tile", "--detections", "--concessions", "--protected",
    "--polygons", "--area", "--allowed-root", "--stac",
}  # fmt: skip
FILE_LIKE = re.compile(r"(/|\.(tif|tiff|geojson|json|gpkg|shp|yaml)$)")
KNOWN = {r.value for r in Reason} | {"UNAVAILABLE"}
COMMANDS = asmspotter_commands()
TILE_READERS = ("detect", "stack", "inspect")


def _id(item: tuple[str, list[str]]) -> str:
    where, argv = item
    return f"{where}:{' '.join(argv[:3])}"


def _inputs(argv: list[str]) -> list[int]:
    """Indexes of the arguments that name files or folders the command reads."""
    out = []
    for i, word in enumerate(argv):
        before = argv[i - 1] if i else ""
        if word.startswith("-") or "://" in word or not FILE_LIKE.search(word):
            continue
        if before.startswith("-") and before not in INPUT_OPTIONS:
            continue  # an output (-o, --out, --export, --store) or some other option's value
        out.append(i)
    return out


def _numeric(argv: list[str]) -> int | None:
    for i in range(1, len(argv)):
        if argv[i - 1].startswith("--") and re.fullmatch(r"-?\d+(\.\d+)?", argv[i]):
            return i
    return None


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("note:", "warning:"))]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    m = re.match(r"error \[([A-Z_]+)\]: \S", lines[0])
    assert m and m.group(1) in KNOWN, lines[0]
    return m.group(1)


def test_the_docs_hold_commands():
    assert len(COMMANDS) >= 20
    names = {argv[0] for _, argv in COMMANDS}
    assert {"detect", "serve", "fetch", "monitor", "label", "train"} <= names


@pytest.mark.parametrize("item", COMMANDS, ids=[_id(c) for c in COMMANDS])
def test_unknown_option_and_bad_number(item, capsys):
    _, argv = item
    assert _one_line(capsys, main([*argv, "--no-such-option"])) == "INVALID_ARGUMENT"
    i = _numeric(argv)
    if i is not None:
        bad = [*argv[:i], "many", *argv[i + 1 :]]
        assert _one_line(capsys, main(bad)) == "INVALID_ARGUMENT"


@pytest.mark.parametrize("item", COMMANDS, ids=[_id(c) for c in COMMANDS])
def test_missing_inputs(item, tmp_path, monkeypatch, capsys):
    _, argv = item
    # no servers: every input is checked before anything would be asked of one
    for var in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ASMSPOTTER_STORE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for i in _inputs(argv):
        missing = str(tmp_path / "nowhere" / Path(argv[i].rstrip("/")).name)
        reason = _one_line(capsys, main([*argv[:i], missing, *argv[i + 1 :]]))
        assert reason in ("FILE_NOT_FOUND", "BUNDLE_INVALID"), (argv, i, reason)


def test_the_same_png_gets_the_same_reason_everywhere(tmp_path, capsys, monkeypatch):
    png = tmp_path / "chip.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "x")
    out = str(tmp_path / "o")
    runs = {
        "stack": ["stack", str(png), "-o", out + ".tif"],
        "inspect": ["inspect", str(png)],
        "detect --local": ["detect", str(png), "--local", "-o", out + ".geojson"],
        "detect --server": ["detect", str(png), "--server", "127.0.0.1:9", "-o", out],
        "label import": ["label", "import", str(png)],
    }
    messages = set()
    for name, argv in runs.items():
        assert _one_line(capsys, main(argv)) == "NOT_A_GEOTIFF", name
        main(argv)
        messages.add(capsys.readouterr().err.split(": ", 2)[-1])
    assert messages == {"not a readable GeoTIFF (a PNG image); give a stacked GeoTIFF such as "
                        "the output of `asmspotter stack`\n"}  # fmt: skip
    documented = {argv[0] for _, argv in COMMANDS}
    assert set(TILE_READERS) <= documented  # the commands above are the documented ones


def test_a_folder_where_a_tile_goes(tmp_path, capsys):
    # Before: IsADirectoryError traceback, locally and with --server.
    for mode in (["--local"], ["--server", "127.0.0.1:9"]):
        argv = ["detect", str(tmp_path), *mode, "-o", str(tmp_path / "s.geojson")]
        assert _one_line(capsys, main(argv)) == "INVALID_ARGUMENT"
