"""`asmspotter monitor run|report` on the real L2A tile; the map driven in headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from shapely.geometry import box, mapping

from asmspotter.cli import main
from imagery.geometry import reproject
from imagery.scene import open_scene
from tests.real_parts import missing

from .browser import Browser
from .conftest import L2A_DIR


def _square(cx: float, cy: float, half: float):
    return box(cx - half, cy - half, cx + half, cy + half)


def _write(path: Path, geoms, props=None, crs=32629) -> Path:
    """A GeoJSON in WGS84 of UTM squares."""
    feats = [
        {"type": "Feature", "properties": (props or [{}] * len(geoms))[k],
         "geometry": mapping(reproject(g, crs, 4326))}
        for k, g in enumerate(geoms)
    ]  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not L2A_DIR.is_dir():
        missing(f"{L2A_DIR} is absent")
    work = tmp_path_factory.mktemp("report")
    tile = work / "tile.tif"
    assert main(["stack", str(L2A_DIR), "-o", str(tile), "--quiet"]) == 0
    with open_scene(tile) as scene:
        x0, y0, x1, y1 = scene.grid.bounds
    cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 3000.0
    # Date 1: sites A, B, C. Date 2: A grown, B unchanged, C gone, D new outside, E new protected.
    a, b, c = _square(cx - 3 * s, cy, 600), _square(cx, cy, 500), _square(cx + 3 * s, cy, 400)
    d1 = _write(work / "d1.geojson", [a, b, c])
    d, e = _square(cx, cy + 3 * s, 450), _square(cx, cy - 3 * s, 350)
    d2 = _write(
        work / "d2.geojson", [_square(cx - 3 * s, cy, 800), b.buffer(10, join_style=2), d, e]
    )
    # A concession covers A and B (written as GeoPackage in UTM), a reserve covers E.
    conc = work / "concessions.gpkg"
    from imagery.vector import write_features

    write_features(conc, [box(cx - 5 * s, cy - s, cx + s, cy + s)], [{"name": "C-7"}], 32629)
    prot = _write(
        work / "protected.geojson", [_square(cx, cy - 3 * s, 1500)], [{"name": "Reserve"}]
    )
    store = f"sqlite:///{work / 'monitor.sqlite'}"
    common = ["--store", store, "--area", "demo", "--tile", str(tile), "--concessions", str(conc),
              "--protected", str(prot), "--model-version", "asm-maskrcnn-1.0.0",
              "--weights-sha256", "ab" * 32]  # fmt: skip
    assert main(["monitor", "run", *common, "--detections", str(d1), "--date", "2020-02-19"]) == 0
    assert main(["monitor", "run", *common, "--detections", str(d2), "--date", "2020-03-05",
                 "--scene-id", "S2A_29RKH_20200305_0_L2A"]) == 0  # fmt: skip
    out = work / "out"
    assert main(["monitor", "report", "--store", store, "--area", "demo", "-o", str(out),
                 "--concessions", str(conc), "--protected", str(prot)]) == 0  # fmt: skip
    return out


def test_alerts_evidence_and_plot(report):
    with (report / "alerts.csv").open() as f:
        rows = list(csv.DictReader(f))
    got = sorted((r["status"], r["compliance"]) for r in rows)
    assert got == [("new", "outside_concessions"), ("new", "protected_area")]
    geo = json.loads((report / "alerts.geojson").read_text())
    assert len(geo["features"]) == 2
    for row in rows:
        packet_dir = Path(row["evidence"])
        packet = json.loads((packet_dir / "packet.json").read_text())
        assert packet["weights_sha256"] == "ab" * 32
        assert packet["model_version"] == "asm-maskrcnn-1.0.0"
        assert packet["scene_id"] == "S2A_29RKH_20200305_0_L2A"
        assert packet["before_date"] == "2020-02-19" and packet["date"] == "2020-03-05"
        for chip in ("before.png", "after.png", "index.html"):
            assert (packet_dir / chip).stat().st_size > 500
        assert packet["area_m2"] == pytest.approx(float(row["area_m2"]), rel=1e-3)
    svg = (report / "mined_area.svg").read_text()
    assert svg.count('class="point"') == 2 and "2020-03-05" in svg
    with (report / "mined_area.csv").open() as f:
        areas = [float(r["mined_area_m2"]) for r in csv.DictReader(f)]
    # Date 1: A + B + C; date 2: grown A + B + D + E (squares, UTM, so exact up to reprojection).
    assert areas[0] == pytest.approx(1200**2 + 1000**2 + 800**2, rel=2e-3)
    assert areas[1] == pytest.approx(1600**2 + 1020**2 + 900**2 + 700**2, rel=2e-3)


def _page_ok(browser: Browser, page: Path) -> None:
    """Open ``page`` offline; nothing but the file itself and inline data may be loaded."""
    text = page.read_text()
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=|url\(['\"]?https?:", text)
    browser.open(page.as_uri())
    loaded = browser.requests
    assert all(u.startswith(("file:", "data:", "about:")) for u in loaded), loaded


def test_map_opens_offline_in_chromium(report, tmp_path):
    page = report / "map.html"
    browser = Browser(tmp_path / "profile")
    try:
        _page_ok(browser, page)
        ev = browser.evaluate
        labels = ev(
            "[...document.querySelectorAll('.leaflet-control-layers label')]"
            ".map(l => l.textContent.trim())"
        )
        assert labels == [
            "picture 2020-02-19", "picture 2020-03-05", "no picture", "sites: new",
            "sites: grown", "sites: unchanged", "sites: gone", "alerts", "concessions",
            "protected areas",
        ]  # fmt: skip
        assert re.fullmatch(r"\d+ k?m", ev("document.querySelector('.leaflet-control-scale-line')"
                                            ".textContent"))  # fmt: skip
        # Latest date shown: grown A, unchanged B, new D and E, gone C.
        counts = ev(
            "Object.fromEntries([...document.querySelectorAll('.legend-row')]"
            ".map(r => [r.dataset.status, +r.dataset.count]))"
        )
        assert {k: v for k, v in counts.items() if v} == {
            "new": 2, "grown": 1, "unchanged": 1, "gone": 1,
        }  # fmt: skip
        assert ev("document.body.dataset.date") == "2020-03-05"
        assert ev("document.querySelectorAll('path.site').length") == 5
        assert ev("document.querySelectorAll('path.zone-concessions').length") == 1
        assert ev("document.querySelectorAll('path.zone-protected').length") == 1
        assert ev("document.querySelectorAll('.alert-marker').length") == 2
        assert ev("document.querySelectorAll('img.base-image').length") == 1
        # The coordinates under the cursor are the map's own.
        browser.move(700, 450)
        want = ev("(p => p.lat.toFixed(5) + ', ' + p.lng.toFixed(5))"
                  "(asmMap.containerPointToLatLng([700, 450]))")  # fmt: skip
        assert ev("document.getElementById('cursor-coords').textContent") == want
        lat, lon = (float(v) for v in want.split(", "))
        assert 24.2 < lat < 25.4 and -12.1 < lon < -10.8  # on the 29RKH tile
        # Clicking an alert opens its popup: facts, review state and the before/after view.
        browser.click(*browser.centre_of(".alert-marker"))
        popup = ev("document.querySelector('.leaflet-popup-content .alert-popup').innerText")
        assert "Alert: new site" in popup and "not reviewed" in popup and "2020-02-19" in popup
        srcs = ev("[...document.querySelectorAll('.leaflet-popup-content .compare img')]"
                  ".map(i => i.src.slice(0, 22))")  # fmt: skip
        assert srcs == ["data:image/png;base64,"] * 2
        ev("(s => { s.value = 20; s.dispatchEvent(new Event('input')); })"
           "(document.querySelector('.compare-slider'))")  # fmt: skip
        assert ev("document.querySelector('.after-wrap').style.width") == "20%"
        shot = browser.screenshot(report / "map.png")
        # The first date: its sites only (A, B, C new).
        ev("(s => { s.value = '2020-02-19'; s.dispatchEvent(new Event('change')); })"
           "(document.getElementById('date-select'))")  # fmt: skip
        assert ev("document.body.dataset.visibleSites") == "3"
        assert ev("document.querySelectorAll('path.status-new').length") == 3
    finally:
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    shutil.copy(shot, Path("/tmp/asm_monitoring_map.png"))


def test_demo_map_of_plain_detections(report, tmp_path):
    """The demo's call: sites as a FeatureCollection (no status) over a tile -> one HTML file."""
    from monitoring.report import write_html_map

    geo = json.loads((report / "alerts.geojson").read_text())
    for f in geo["features"]:
        f["properties"] = {"score": 0.9}
    tile = next(report.parent.glob("tile.tif"))
    page = write_html_map(geo, tile, tmp_path / "sites.html")
    text = page.read_text()
    assert text.count('"properties": {"score": 0.9}') == 2 and "data:image/png;base64," in text
    browser = Browser(tmp_path / "profile")
    try:
        _page_ok(browser, page)
        # Sites without a status are drawn, coloured and counted as "detected".
        rows = browser.evaluate(
            "[...document.querySelectorAll('.legend-row')].map(r => [r.dataset.status, "
            "r.dataset.count])"
        )
        assert rows == [["detected", "2"]]
        assert browser.evaluate("document.querySelectorAll('path.status-detected').length") == 2
    finally:
        browser.close()


def test_bad_input_is_one_line(tmp_path, capsys):
    det = tmp_path / "d.geojson"
    det.write_text('{"type": "FeatureCollection", "features": []}')
    base = ["monitor", "run", "--area", "x", "--detections", str(det)]
    assert main([*base, "--store", "mysql://h/db", "--date", "2024-01-01"]) == 2
    assert capsys.readouterr().err.startswith("error [INVALID_ARGUMENT]: unknown store URL")
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    assert main([*base, "--store", store, "--date", "01/02/2024"]) == 2
    assert "not an ISO date" in capsys.readouterr().err
    # A mistyped store is an error, not an empty database that "has no runs".
    assert main(["monitor", "report", "--store", store, "--area", "y", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error [FILE_NOT_FOUND]: ") and "no monitoring store" in err
    # So it is for every command that reads the store (Label Studio is never asked).
    nowhere = ["--url", "http://127.0.0.1:1", "--token", "t"]
    for cmd in (["label", "alerts", "--files-root", str(tmp_path)], ["label", "reviews"]):
        assert main([*cmd, "--store", store, *nowhere]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error [FILE_NOT_FOUND]: ") and "no monitoring store" in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s.sqlite").exists()
    ok = [*base, "--store", store, "--date", "2024-01-01", "--model-version", "m-1"]
    assert main([*ok, "--weights-sha256", "none"]) == 0
    assert "note: created a new monitoring store" in capsys.readouterr().err
    assert main(["monitor", "report", "--store", store, "--area", "y", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs for area 'y'" in err


def test_vendored_leaflet_is_intact_and_inlined(tmp_path):
    """The vendored files are the npm package's (SHA256SUMS) and a page needs no other file."""
    import hashlib

    from monitoring.map_page import VENDOR, render

    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "BSD 2-Clause License" in (VENDOR / "LICENSE").read_text()
    empty = {"type": "FeatureCollection", "features": []}
    page = render({"title": "t", "images": [], "dates": [], "sites": empty, "alerts": empty,
                   "zones": {}, "colors": {}, "view": [[0, 0], [1, 1]]})  # fmt: skip
    assert "Leaflet 1.9.4" in page and "url(images/" not in page and "url(data:image/png" in page
