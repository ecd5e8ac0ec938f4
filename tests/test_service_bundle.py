"""The server with real bundles: the packaged default bundle finds a known number of sites in a
seeded generated scene, the same through gRPC as in-process and through `detect --local`; a
bundle written by the training code starts and stops with `asmspotter serve`."""

from __future__ import annotations

import json
import re

import pytest

from asmspotter.demo import _matched
from imagery.synthetic.output import write_scene
from service.client import DetectionClient
from service.predictor import DetectOptions, Predictor
from service.server import DEFAULT_BUNDLE, DetectionServer, ServerConfig, load_model

# The default bundle on generated scene seed 7, 448 x 448 px (25 windows, 29 true sites), at
# min_score MIN_SCORE: its default threshold (calibrated on real chips) keeps none of these
# synthetic sites, so the test asks for weaker ones. A new default bundle changes these numbers:
# re-measure and update them.
MIN_SCORE = 0.001
SITES, MATCHED = 23, 5


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("bundle_scene"), 7, 448, 448, clusters=2)


@pytest.fixture(scope="module")
def served():
    srv = DetectionServer(ServerConfig(address="127.0.0.1:0", device="cpu", max_batch=4))
    srv.start()
    srv.load()
    yield srv
    srv.stop(grace=5)


def test_default_bundle_through_the_server_and_in_process(served, scene):
    info = json.loads((DEFAULT_BUNDLE / "bundle.json").read_text())
    with DetectionClient(f"127.0.0.1:{served.port}", timeout_s=300) as client:
        assert client.health() == "SERVING"
        model = client.get_model()
        assert (model.name, model.version, model.engine) == (
            info["name"],
            info["version"],
            info["engine"],
        )
        assert model.weights_sha256 == info["weights_sha256"] and len(model.weights_sha256) == 64
        assert model.band_names == info["bands"] and model.chip_size == info["chip_size"]
        result = client.detect_tile(str(scene.tile), min_score=MIN_SCORE, output_crs="EPSG:32733")
    assert result.model.weights_sha256 == info["weights_sha256"]
    assert result.window_count == 25  # 448 px with 128 px windows, 32 px overlap
    assert len(result.sites) == SITES
    truth = json.loads(scene.truth.read_text())["features"]
    predictor = Predictor(load_model(DEFAULT_BUNDLE, "cpu"), max_batch=4)
    try:
        local = predictor.detect_file(scene.tile, DetectOptions(MIN_SCORE, "EPSG:32733"))
    finally:
        predictor.close()
    assert len(local.sites) == SITES
    for remote_site, mine in zip(result.sites, local.sites, strict=True):
        assert remote_site.score == pytest.approx(mine.score, abs=1e-5)
        assert remote_site.class_name == mine.class_name
        assert remote_site.area_m2 == pytest.approx(mine.area_m2)
    from imagery.geometry import reproject

    in_4326 = [{"geometry": reproject(s.geometry, "EPSG:32733", "EPSG:4326")} for s in local.sites]
    assert _matched(in_4326, truth) == MATCHED


def test_detect_local_command(scene, tmp_path, capsys):
    from asmspotter.cli import main

    out = tmp_path / "sites.geojson"
    assert (
        main(["detect", "--local", str(scene.tile), "--min-score", str(MIN_SCORE), "-o", str(out)])
        == 0
    )
    line = capsys.readouterr().out.strip()
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == SITES
    assert line == f"{SITES} sites found in 1 tile(s); GeoJSON: {out}"
    assert (
        main(["detect", "--local", "--bundle", str(tmp_path), str(scene.tile), "-o", str(out)]) == 2
    )
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
    # one log line per request at INFO (the default for servers)
    assert re.search(r"INFO service\.servicer: GetModel OK [0-9.]+s peer=ipv4:127\.0\.0\.1", err)
