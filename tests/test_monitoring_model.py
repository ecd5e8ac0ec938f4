"""`monitor run --bundle`: the model bundle runs over a tile and the run records its identity."""

from __future__ import annotations

import json

from rasterio.windows import Window
from shapely.geometry import Point

from asmspotter.cli import main
from imagery.scene import Grid, open_scene
from imagery.tiles import write_tile
from monitoring.store import Store
from tests.real_parts import missing

from .conftest import L2A_DIR
from .service_support import make_tile


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
    args = ["monitor", "run", "--store", store, "--area", "m"]
    # The real sample is decimated to 100 m: the 10 m model refuses it, nothing is recorded.
    assert main([*args, "--tile", str(tile), "--bundle", str(tiny_bundle)]) == 2
    assert capsys.readouterr().err.startswith("error [GSD_MISMATCH]: ")
    assert not (tmp_path / "m.sqlite").exists()
    ten, _ = make_tile(tmp_path / "ten.tif", 192, [Point(60, 60).buffer(8)])
    run = [*args, "--tile", str(ten), "--date", "2020-02-19", "--scene-id", scene.scene_id]
    assert main([*run, "--bundle", str(tiny_bundle)]) == 0, capsys.readouterr().err
    tile = ten
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    out = capsys.readouterr().out
    assert "recorded run 1 (m, 2020-02-19, S2A_29RKH_20200219_0_L2A, " in out
    assert f"{info['name']}-{info['version']})" in out
    with Store(store) as s:
        (run,) = s.runs("m")
    assert run.model_version == f"{info['name']}-{info['version']}"
    assert run.weights_sha256 == info["weights_sha256"] and len(run.weights_sha256) == 64
    assert run.tile == str(tile.resolve()) and run.source == str(tiny_bundle)
