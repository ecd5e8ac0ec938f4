"""The server with a real bundle written by the training code (torchvision Mask R-CNN on CPU):
model identity in every response, and the same sites through gRPC as in-process."""

from __future__ import annotations

import json

import pytest
from shapely.geometry import Point

from service.client import DetectionClient
from service.predictor import DetectOptions, Predictor
from service.server import DetectionServer, ServerConfig, load_model
from tests.service_support import make_tile


@pytest.fixture(scope="module")
def served(tiny_bundle):
    srv = DetectionServer(
        ServerConfig(address="127.0.0.1:0", bundle=str(tiny_bundle), device="cpu", max_batch=4)
    )
    srv.start()
    srv.load()
    yield srv
    srv.stop(grace=5)


def test_real_bundle_through_the_server(served, tiny_bundle, tmp_path):
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    tile, _ = make_tile(tmp_path / "t.tif", 96, [Point(30, 30).buffer(6), Point(70, 60).buffer(4)])
    with DetectionClient(f"127.0.0.1:{served.port}", timeout_s=120) as client:
        assert client.health() == "SERVING"
        model = client.get_model()
        assert (model.name, model.version, model.engine) == (
            info["name"],
            info["version"],
            info["engine"],
        )
        assert model.weights_sha256 == info["weights_sha256"] and len(model.weights_sha256) == 64
        assert model.band_names == info["bands"] and model.chip_size == 64
        result = client.detect_tile(tile, min_score=0.0, output_crs="EPSG:32630")
    assert result.model.weights_sha256 == info["weights_sha256"]
    assert result.window_count == 4  # 96 px with 64 px windows, 16 px overlap
    predictor = Predictor(load_model(tiny_bundle, "cpu"), max_batch=4)
    try:
        local = predictor.detect_file(tile, DetectOptions(min_score=0.0, output_crs="EPSG:32630"))
    finally:
        predictor.close()
    assert len(result.sites) == len(local.sites)
    for remote, mine in zip(result.sites, local.sites, strict=True):
        assert remote.score == pytest.approx(mine.score, abs=1e-5)
        assert remote.class_name == mine.class_name
        assert remote.area_m2 == pytest.approx(mine.area_m2)


def test_detect_local_command(tiny_bundle, tmp_path, capsys):
    from asmspotter.cli import main

    tile, _ = make_tile(tmp_path / "t.tif", 64, [Point(30, 30).buffer(6)])
    out = tmp_path / "sites.geojson"
    argv = ["detect", "--local", "--bundle", str(tiny_bundle), str(tile), "-o", str(out)]
    assert main([*argv, "--min-score", "0"]) == 0
    line = capsys.readouterr().out.strip()
    fc = json.loads(out.read_text())
    assert line == f"{len(fc['features'])} sites found in 1 tile(s); GeoJSON: {out}"
    assert main(["detect", "--local", "--bundle", str(tmp_path), str(tile), "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error [BUNDLE_INVALID]")


def test_serve_command_starts_and_stops_gracefully(tiny_bundle, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.service_support import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "asmspotter.cli", "serve", "--address", f"127.0.0.1:{port}"]
    cmd += ["--bundle", str(tiny_bundle), "--device", "cpu", "--grace", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with DetectionClient(f"127.0.0.1:{port}") as client:
            client.wait_serving(timeout=120)
            assert client.get_model().weights_sha256
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"serving on 127.0.0.1:{port}" in out
    assert time.monotonic() - started < 30
