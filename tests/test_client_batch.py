"""Batch submission: per-tile errors do not stop the batch, GeoJSON + GeoPackage outputs, and a
batch killed with SIGKILL half way resumes with exactly one result per tile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from shapely.geometry import Point

from service.client import DetectionClient, expand_inputs, submit_batch
from service.client.manifest import Manifest
from service.server import DetectionServer, ServerConfig
from tests.real_parts import require_module
from tests.service_support import WaterIndexModel, cli_command, make_tile

REPO = Path(__file__).resolve().parents[1]


def _server(delay_s: float = 0.0) -> DetectionServer:
    srv = DetectionServer(
        ServerConfig(address="127.0.0.1:0", max_active=2, max_queued=8),
        model=WaterIndexModel(chip_size=64, delay_s=delay_s),
    )
    srv.start()
    srv.load()
    return srv


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    (d / "sub").mkdir()
    for i in range(6):
        folder = d / "sub" if i % 2 else d
        # tile i holds i % 3 + 1 ponds
        ponds = [Point(12 + 18 * k, 20 + i).buffer(5) for k in range(i % 3 + 1)]
        make_tile(folder / f"tile{i}.tif", 64, ponds)
    return d


def test_expand_inputs(tiles, tmp_path):
    assert len(expand_inputs([tiles])) == 6
    assert len(expand_inputs([str(tiles / "*.tif")])) == 3
    assert len(expand_inputs([tiles / "tile0.tif", str(tiles / "tile0.tif"), tiles])) == 6
    assert expand_inputs([tmp_path / "none.tif"]) == [tmp_path / "none.tif"]


def test_batch_reports_errors_and_writes_geojson_and_gpkg(tiles, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"garbage")
    srv = _server()
    try:
        with DetectionClient(f"127.0.0.1:{srv.port}") as client:
            report = submit_batch(
                client,
                [tiles, bad, tmp_path / "missing.tif"],
                tmp_path / "out",
                concurrency=3,
                progress=False,
            )
            assert (report.tiles, report.succeeded, report.failed) == (8, 6, 2)
            assert sorted(e.reason for e in report.errors) == ["FILE_NOT_FOUND", "NOT_A_GEOTIFF"]
            expected_sites = sum(i % 3 + 1 for i in range(6))
            assert report.sites == expected_sites
            fc = json.loads(report.geojson.read_text())
            assert len(fc["features"]) == expected_sites
            props = fc["features"][0]["properties"]
            assert {"site_id", "class", "score", "area_m2", "tile_id", "source"} <= set(props)
            assert props["model_version"] == "0.0.1" and props["weights_sha256"] == "0" * 64

            pyogrio = require_module("pyogrio")
            info = pyogrio.read_info(report.gpkg)
            assert info["features"] == expected_sites and info["crs"] == "EPSG:4326"
            assert info["geometry_type"] == "MultiPolygon"
            _, _, geoms, fields = pyogrio.raw.read(report.gpkg)
            assert len(geoms) == expected_sites and set(fields[1]) == {"pond"}

            again = submit_batch(client, [tiles, bad], tmp_path / "out", progress=False)
            assert (again.skipped, again.succeeded, again.failed) == (7, 0, 0)
            assert again.sites == expected_sites
    finally:
        srv.stop(grace=1)


def _manifest_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_sigkill_mid_batch_then_resume_gives_one_result_per_tile(tmp_path):
    folder = tmp_path / "tiles"
    for i in range(10):
        make_tile(folder / f"t{i:02d}.tif", 64, [Point(30, 30).buffer(6 + i % 3)])
    srv = _server(delay_s=0.4)
    out = tmp_path / "out"
    cmd = cli_command(
        "submit",
        str(folder),
        "--server",
        f"127.0.0.1:{srv.port}",
        "-o",
        str(out),
        "--concurrency",
        "2",
        "--no-progress",
    )
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _manifest_lines(out / "manifest.jsonl") < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        done_before = _manifest_lines(out / "manifest.jsonl")
        assert 3 <= done_before < 10
        assert not (out / "sites.geojson").exists()

        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "10 sites" in result.stdout
    finally:
        srv.stop(grace=1)
    records = Manifest(out / "manifest.jsonl").records
    assert len(records) == 10 and all(r["status"] == "ok" for r in records.values())
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x]
    assert len(lines) == len({r["key"] for r in lines}) == 10  # no tile ran twice to completion
    fc = json.loads((out / "sites.geojson").read_text())
    sources = [f["properties"]["source"] for f in fc["features"]]
    assert sorted(sources) == sorted(str((folder / f"t{i:02d}.tif").resolve()) for i in range(10))
    assert len(list((out / "results").glob("*.geojson"))) == 10


def test_torn_manifest_line_is_ignored(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta')
    manifest = Manifest(path)
    assert set(manifest.records) == {"a"} and manifest.done("a") and not manifest.done("b")
    manifest.append({"key": "b", "status": "error", "code": "INVALID_ARGUMENT"})
    assert Manifest(path).done("b") and not Manifest(path).done("b", retry_errors=True)
