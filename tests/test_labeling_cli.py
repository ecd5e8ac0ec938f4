"""`asmspotter label init|import|predict|export` on a real server with real polygons.

Amazon Mining Watch's Ghana mining polygons are imported as predictions on chips of a tile laid
over them; a labeller accepts them; the export's EPSG:4326 sites must be those polygons again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from rasterio.transform import Affine
from shapely.geometry import box, shape

from asmspotter.cli import main
from imagery.geometry import reproject, to_map_space, utm_crs_for
from imagery.scene import Grid
from imagery.sensors import S2_STACK
from imagery.tiles import write_tile
from imagery.vector import read_features
from labeling import project as lsproject
from tests.real_parts import missing

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AMW_GHANA = (
    SHARED
    / "amazon-mining-watch/outputs/44px_v2.8/mining_ghana_ashanti_v44px_v2.8_2017-2020.geojson"
)
SIZE = 128


def test_label_without_server_settings_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert main(["label", "init"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error [INVALID_ARGUMENT]: Label Studio URL")


@pytest.mark.labelstudio
def test_cli_round_trip_of_real_polygons(labelstudio, tmp_path, capsys):
    if not AMW_GHANA.is_file():
        missing(f"real data {AMW_GHANA} is absent")
    polygons = read_features(AMW_GHANA)
    target = polygons.geometries[0]
    crs = utm_crs_for(target.centroid.x, target.centroid.y)
    cx, cy = reproject(target.centroid, "EPSG:4326", crs).coords[0]
    transform = Affine(10, 0, round(cx, -1) - SIZE * 5, 0, -10, round(cy, -1) + SIZE * 5)
    values = np.random.default_rng(2).uniform(0.02, 0.3, (6, SIZE, SIZE)).astype(np.float32)
    tile = write_tile(
        tmp_path / "ghana.tif",
        values,
        Grid(crs, transform, SIZE, SIZE),
        S2_STACK,
        scene_id="GHANA_TEST",
        datetime="2020-01-15T10:30:00Z",
        cog=False,
    )
    conn = ["--url", labelstudio.url, "--token", labelstudio.token, "--title", "ASM CLI test"]
    files = ["--files-root", str(labelstudio.document_root)]

    assert main(["label", "init", *conn]) == 0
    assert main(["label", "init", *conn]) == 0  # idempotent
    assert main(["label", "import", *conn, *files, str(tile), "--chip-size", "64"]) == 0
    assert (
        main(["label", "predict", *conn, *files, "--polygons", str(AMW_GHANA), "--score", "0.7"])
        == 0
    )
    out = capsys.readouterr().out
    assert "created project" in out and "updated project" in out and "4 tasks created" in out
    assert "4 tasks given predictions" in out

    # A labeller accepts every suggestion as it is.
    ls = lsproject.connect(labelstudio.url, labelstudio.token)
    project_id = lsproject.require_project(ls, "ASM CLI test")
    for task in ls.tasks.list(project=project_id, resolve_uri=False):
        (prediction,) = task.predictions
        ls.annotations.create(task.id, result=prediction.result, was_cancelled=False)

    dataset = tmp_path / "dataset"
    assert main(["label", "export", *conn, *files, "--out", str(dataset), "--strict"]) == 0
    sites = json.loads((dataset / "sites.geojson").read_text())["features"]
    assert sites and {f["properties"]["label"] for f in sites} == {"pit"}
    frame = to_map_space(box(0, 0, SIZE, SIZE), transform)
    expected = shapely.union_all(
        [reproject(shapely.make_valid(g), "EPSG:4326", crs) for g in polygons.geometries]
    ).intersection(frame)
    got = shapely.union_all([reproject(shape(f["geometry"]), "EPSG:4326", crs) for f in sites])
    assert got.symmetric_difference(expected).area <= 0.01 * expected.area
    doc = json.loads((dataset / "annotations.json").read_text())
    assert len(doc["images"]) == 4 and {i["scene_id"] for i in doc["images"]} == {"GHANA_TEST"}


@pytest.mark.labelstudio
def test_polygons_that_miss_every_chip_add_nothing(labelstudio, tmp_path, capsys):
    # Before: "4 tasks given predictions (0 regions)", and those empty predictions then kept a
    # corrected file of the same name from being imported.
    crs = utm_crs_for(-1.6, 6.6)
    cx, cy = reproject(shapely.Point(-1.6, 6.6), "EPSG:4326", crs).coords[0]
    transform = Affine(10, 0, round(cx, -1), 0, -10, round(cy, -1))
    values = np.random.default_rng(3).uniform(0.02, 0.3, (6, SIZE, SIZE)).astype(np.float32)
    grid = Grid(crs, transform, SIZE, SIZE)
    tile = write_tile(tmp_path / "t.tif", values, grid, S2_STACK, scene_id="MISS", cog=False)
    far = tmp_path / "sites.geojson"
    square = [[-50, -5], [-49.9, -5], [-49.9, -4.9], [-50, -4.9], [-50, -5]]
    far.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
                                                          "coordinates": [square]}}]}))  # fmt: skip
    conn = ["--url", labelstudio.url, "--token", labelstudio.token, "--title", "ASM miss test"]
    files = ["--files-root", str(labelstudio.document_root)]
    assert main(["label", "init", *conn]) == 0
    assert main(["label", "import", *conn, *files, str(tile), "--chip-size", "64"]) == 0
    capsys.readouterr()
    assert main(["label", "predict", *conn, *files, "--polygons", str(far)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error [INVALID_ARGUMENT]: ")
    assert "none of the 1 polygons overlaps any of the 4 chips" in err[0]
    ls = lsproject.connect(labelstudio.url, labelstudio.token)
    project_id = lsproject.require_project(ls, "ASM miss test")
    tasks = list(ls.tasks.list(project=project_id, resolve_uri=False))
    assert len(tasks) == 4 and not any(t.predictions for t in tasks)  # nothing was added
    # The same name with polygons on the chips now works.
    near = to_map_space(box(10, 10, 100, 60), transform)
    write_features_to = tmp_path / "fixed"
    write_features_to.mkdir()
    fixed = write_features_to / "sites.geojson"
    fixed.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {},
         "geometry": shapely.geometry.mapping(reproject(near, crs, "EPSG:4326"))}]}))  # fmt: skip
    assert main(["label", "predict", *conn, *files, "--polygons", str(fixed)]) == 0
    assert "4 tasks given predictions (" in capsys.readouterr().out
