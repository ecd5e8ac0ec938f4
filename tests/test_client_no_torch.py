"""The client SDK and the client commands work where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from shapely.geometry import Point

from service.server import DetectionServer, ServerConfig
from tests.service_support import BLOCK_TORCH, WaterIndexModel, cli_command, make_tile

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, **kw)


def test_base_install_has_no_torch():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [
        d for d in project["dependencies"] if d.lower().startswith(("torch", "torchvision"))
    ]


def test_client_imports_without_torch():
    code = BLOCK_TORCH + (
        "import service, service.client, service.cli, service.errors\n"
        "from service.client import DetectionClient, AsyncDetectionClient, submit_batch\n"
        "try:\n    import torch\nexcept ModuleNotFoundError:\n    pass\n"
        "else:\n    raise SystemExit('torch was importable')\n"
        "assert 'torch' not in sys.modules\nprint('ok')\n"
    )
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture(scope="module")
def server():
    srv = DetectionServer(ServerConfig(address="127.0.0.1:0"), model=WaterIndexModel(chip_size=64))
    srv.start()
    srv.load()
    yield srv
    srv.stop(grace=1)


def test_detect_and_models_commands_without_torch(server, tmp_path):
    tile, _ = make_tile(tmp_path / "a.tif", 80, [Point(20, 20).buffer(6), Point(60, 60).buffer(6)])
    addr = f"127.0.0.1:{server.port}"
    out = tmp_path / "sites.geojson"
    result = _run(cli_command("detect", str(tile), "--server", addr, "-o", str(out)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"2 sites found in 1 tile(s); GeoJSON: {out}"
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 2
    assert fc["features"][0]["properties"]["model_version"] == "0.0.1"

    result = _run(cli_command("models", "--server", addr))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "water-index"

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    result = _run(cli_command("detect", str(bad), "--server", addr, "-o", str(out)))
    assert result.returncode == 2
    assert result.stderr.startswith("error [NOT_A_GEOTIFF]:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_server_is_one_line(tmp_path):
    tile, _ = make_tile(tmp_path / "a.tif", 40, [])
    cmd = cli_command(
        "detect", str(tile), "--server", "127.0.0.1:1", "--timeout", "2", "-o", str(tmp_path / "o")
    )
    result = _run(cmd)
    assert result.returncode == 2
    assert result.stderr.startswith("error [UNAVAILABLE]") and "Traceback" not in result.stderr
