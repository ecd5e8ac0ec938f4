"""`monitor run --bundle`: the model bundle runs over a tile and the run records its identity."""

from __future__ import annotations

import json

from rasterio.windows import Window

from asmspotter.cli import main
from imagery.scene import Grid, open_scene
from imagery.tiles import write_tile
from monitoring.store import Store
from tests.real_parts import missing

from .conftest import L2A_DIR


def test_run_with_bundle_records_model(tiny_bundle, tmp_path, capsys):
    if not L2A_DIR.is_dir():
        missing(f"{L2A_DIR} is absent")
    with open_scene(L2A_DIR) as scene:  # a 192 px crop of the real scene, the model's bands
        win = Window(400, 400, 192, 192)
        g = scene.grid
        grid = Grid(g.crs, g.window_transform(win), 192, 192)
        tile = write_tile(
            tmp_path / "crop.tif", scene.read(win), grid, scene.bands,
            scene_id=scene.scene_id, datetime=scene.datetime,
        )  # fmt: skip
    store = f"sqlite:///{tmp_path / 'm.sqlite'}"
    args = ["monitor", "run", "--store", store, "--area", "m", "--tile", str(tile)]
    assert main([*args, "--bundle", str(tiny_bundle)]) == 0, capsys.readouterr().err
    assert "recorded run 1 (m, 2020-02-19, S2A_29RKH_20200219_0_L2A)" in capsys.readouterr().out
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    with Store(store) as s:
        (run,) = s.runs("m")
    assert run.model_version == f"{info['name']}-{info['version']}"
    assert run.weights_sha256 == info["weights_sha256"] and len(run.weights_sha256) == 64
    assert run.tile == str(tile.resolve()) and run.source == str(tiny_bundle)
