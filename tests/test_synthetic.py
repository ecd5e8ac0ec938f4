"""The synthetic scene generator: determinism, exact truth, file formats, look-alikes, CLI."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pycocotools.coco import COCO
from rasterio.transform import Affine
from shapely.geometry import shape

from asmspotter.cli import main
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84, geometry_to_mask, reproject
from imagery.scene import open_scene
from imagery.sensors import S2_STACK
from imagery.synthetic.layout import LANDCOVER, LOOKALIKES, make_plan
from imagery.synthetic.output import generate_dataset, write_large_tile, write_scene
from imagery.synthetic.render import render
from imagery.synthetic.scene import UTM_EPSG, generate_scene

SIZE = 384


@pytest.fixture(scope="module")
def scene():
    s = generate_scene(11, SIZE, SIZE, clusters=3, cloud_probability=0, nodata_probability=0)
    assert len(s.instances) >= 5
    return s


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_scene_other_seed_differs():
    a = generate_scene(5, 200, 200)
    b = generate_scene(5, 200, 200)
    c = generate_scene(6, 200, 200)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.labels, b.labels)
    assert a.scene_id == b.scene_id and a.grid == b.grid
    assert a.image.shape != c.image.shape or a.image.tobytes() != c.image.tobytes()


def test_written_files_are_byte_identical(tmp_path):
    a = write_scene(tmp_path / "a", 21, 256, 256)
    b = write_scene(tmp_path / "b", 21, 256, 256)
    c = write_scene(tmp_path / "c", 22, 256, 256)
    for name in ("tile", "annotations", "truth"):
        assert _sha(getattr(a, name)) == _sha(getattr(b, name))
    assert _sha(a.tile) != _sha(c.tile)


def test_truth_masks_equal_rasterised_truth_polygons(scene):
    g = scene.grid
    features = scene.truth_features()
    assert len(features) == len(scene.instances)
    for inst, feat in zip(scene.instances, features, strict=True):
        mask = scene.instance_mask(inst)
        assert np.array_equal(mask, scene.labels == inst.id)
        assert np.array_equal(
            geometry_to_mask(scene.instance_geometry(inst), g.transform, (g.height, g.width)), mask
        )
        back = reproject(shape(feat["geometry"]), WGS84, g.crs)  # the GeoJSON, EPSG:4326
        assert np.array_equal(geometry_to_mask(back, g.transform, (g.height, g.width)), mask)
        assert feat["properties"]["category"] == inst.category


def test_sizes_are_realistic(scene):
    for inst in scene.instances:
        h, w = inst.mask.shape
        assert inst.area_px >= 4
        assert 2 <= max(h, w) <= 60


def _erode(mask):
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


def _index(img, a, b):
    i, j = S2_STACK.index(a), S2_STACK.index(b)
    return (img[i] - img[j]) / (img[i] + img[j])


def test_sites_look_like_what_they_are(scene):
    ndwi = _index(scene.image, "B03", "B08")
    ndvi = _index(scene.image, "B08", "B04")
    forest = scene.landcover == LANDCOVER.index("forest")
    water = [LANDCOVER.index(n) for n in ("river", "lake", "oxbow", "fishpond", "pond")]
    dry = ~np.isin(scene.landcover, water) & (scene.labels == 0)
    kinds = {inst.category for inst in scene.instances}
    assert kinds == {"pit", "pond"}
    checked = 0
    for inst in scene.instances:
        m = scene.instance_mask(inst)
        ring = ~m & ~_erode(_erode(~m)) & dry  # the land 1-2 px around the site
        if inst.category == "pond" and ring.any():  # wetter than the land around it
            assert np.median(ndwi[m]) > np.median(ndwi[ring]) + 0.05
        core = _erode(m)  # edge pixels mix with the surroundings (sensor blur)
        if core.sum() < 3:
            continue
        checked += 1
        if inst.category == "pond":  # sediment-laden water: NDWI > 0
            assert np.median(ndwi[core]) > 0
        else:  # excavated soil: not vegetated, far from the forest's NDVI
            assert np.median(ndvi[core]) < 0.5 * np.median(ndvi[forest])
    assert checked >= 3
    assert np.median(ndvi[forest]) > 0.7


def test_lookalikes_present_and_unlabelled():
    seen = set()
    for seed in range(8):
        s = generate_scene(seed, 512, 512)
        for name in LOOKALIKES:
            painted = s.landcover == LANDCOVER.index(name)
            assert not s.labels[painted].any(), name
            if painted.any():
                seen.add(name)
        site_codes = {LANDCOVER.index("pit"), LANDCOVER.index("pond")}
        assert set(np.unique(s.landcover[s.labels > 0])) <= site_codes
    assert {"river", "fishpond", "road", "clearing"} <= seen


def test_tile_opens_with_the_right_bands_crs_and_scaling(tmp_path):
    files = write_scene(tmp_path, 3, 256, 256, nodata_probability=1.0)
    s = generate_scene(3, 256, 256, nodata_probability=1.0)
    with open_scene(files.tile) as tile:
        assert tile.bands == S2_STACK
        assert tile.grid.crs == s.grid.crs and tile.grid.crs.to_epsg() in UTM_EPSG
        assert tile.grid.transform == s.grid.transform and tile.grid.res == 10
        assert tile.scene_id == s.scene_id and tile.sensor.name == "sentinel2-l2a"
        data = tile.read()
    nodata = np.isnan(s.image)
    assert nodata.any() and np.array_equal(np.isnan(data), nodata)
    assert np.allclose(data[~nodata], s.image[~nodata], atol=0.51e-4)
    with rasterio.open(files.tile) as src:
        assert src.dtypes[0] == "uint16" and src.nodata == 0 and src.scales[0] == 1e-4
        assert src.tags()["ASMSPOTTER_DATETIME"] == s.datetime


def test_dataset_coco_loads_and_masks_equal_truth(tmp_path):
    path = generate_dataset(tmp_path, 3, scene_size=256, chip_size=128, seed=4, val_fraction=0.34)
    api = COCO(str(path))
    doc = json.loads(path.read_text())
    assert [c["name"] for c in doc["categories"]] == ["pit", "pond"]
    scenes = {}
    for i in range(3):
        s = generate_scene(4 * 100_003 + i, 256, 256)
        scenes[s.scene_id] = s
    splits: dict[str, set[str]] = {}
    negatives = 0
    for img in doc["images"]:
        s = scenes[img["scene_id"]]
        splits.setdefault(img["scene_id"], set()).add(img["split"])
        assert (tmp_path / img["file_name"]).is_file()
        col0, row0 = ~s.grid.transform * (img["transform"][2], img["transform"][5])
        r, c = round(row0), round(col0)
        assert Affine(*img["transform"]) == s.grid.transform @ Affine.translation(c, r)
        chip_labels = s.labels[r : r + img["height"], c : c + img["width"]]
        anns = api.loadAnns(api.getAnnIds(imgIds=[img["id"]]))
        negatives += not anns
        for ann in anns:
            truth = chip_labels == ann["instance"]
            assert np.array_equal(api.annToMask(ann).astype(bool), truth)
            inst = next(x for x in s.instances if x.id == ann["instance"])
            assert api.cats[ann["category_id"]]["name"] == inst.category
        with open_scene(tmp_path / img["file_name"]) as chip:
            assert chip.grid.transform == Affine(*img["transform"])
    assert all(len(v) == 1 for v in splits.values())  # split by scene
    assert {next(iter(v)) for v in splits.values()} == {"train", "val"}
    assert len(doc["annotations"]) > 0 and negatives > 0  # negative chips are kept
    truth = json.loads((tmp_path / "truth.geojson").read_text())
    assert len(truth["features"]) == sum(len(s.instances) for s in scenes.values())
    only_sites = generate_dataset(tmp_path / "pos", 1, 256, 128, seed=4, keep_negatives=0.0)
    pos = json.loads(only_sites.read_text())
    assert {a["image_id"] for a in pos["annotations"]} == {i["id"] for i in pos["images"]}


def test_any_window_renders_like_the_whole_scene():
    plan = make_plan(8, 300, 300, clusters=2, cloud_probability=1.0, nodata_probability=1.0)
    plan.noise_sigma[:] = 0  # the only part drawn per window
    whole = render(plan, 0, 0, 300, 300)
    part = render(plan, 70, 130, 120, 150)
    window = np.s_[70:190, 130:280]
    assert np.allclose(part.image, whole.image[:, window[0], window[1]], atol=1e-6, equal_nan=True)
    assert np.array_equal(part.labels, whole.labels[window])
    assert np.array_equal(part.landcover, whole.landcover[window])


def test_bad_sizes_are_refused():
    with pytest.raises(AsmSpotterError) as err:
        generate_scene(1, 0, 100)
    assert err.value.reason is Reason.INVALID_ARGUMENT
    with pytest.raises(AsmSpotterError):
        generate_scene(1, 10_000, 10_000)  # too big for memory: write_large_tile instead


def test_large_tile_block_by_block(tmp_path):
    files = write_large_tile(
        tmp_path / "big.tif", size=600, seed=1, clusters=3, block=256, progress=False
    )
    with open_scene(files.tile) as tile:
        data = tile.read()
        assert tile.grid.width == tile.grid.height == 600 and tile.bands == S2_STACK
    assert np.isnan(data).any() and np.isfinite(data).any()  # a swath edge
    truth = json.loads(files.truth.read_text())["features"]
    assert len(truth) == files.instances > 0
    ndwi = _index(data, "B03", "B08")
    with rasterio.open(files.tile) as src:
        for feat in truth:
            geom = reproject(shape(feat["geometry"]), WGS84, src.crs)
            m = geometry_to_mask(geom, src.transform, (600, 600))
            assert m.sum() == feat["properties"]["area_px"]
            if feat["properties"]["category"] == "pond":
                assert np.nanmedian(ndwi[m]) > -0.2  # water (allowing thin cloud/haze)


def test_scene_generation_is_fast():
    start = time.perf_counter()
    generate_scene(1, 1024, 1024)
    assert time.perf_counter() - start < 20  # ~1 s alone on one core; shared CI machine


def test_cli_generate_scene_and_bad_input(tmp_path, capsys):
    assert main(["generate", "scene", "-o", str(tmp_path), "--seed", "2", "--size", "128"]) == 0
    assert len(list(tmp_path.glob("*.tif"))) == 1 and len(list(tmp_path.glob("*.geojson"))) == 1
    capsys.readouterr()
    assert main(["generate", "dataset", "-o", str(tmp_path / "d"), "-n", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error [INVALID_ARGUMENT]") and "\n" not in err
