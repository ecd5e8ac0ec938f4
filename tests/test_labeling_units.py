"""Labelling parts that need no server: brush RLE, percent units, rendering, polygon import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from rasterio.transform import Affine
from shapely.geometry import box

from imagery.errors import AsmSpotterError
from imagery.geometry import geometry_to_mask, reproject, to_map_space, utm_crs_for
from imagery.render import composite, percentile_stretch
from labeling import brush
from labeling.config import label_config
from labeling.predict import PolygonPredictor
from labeling.regions import points_from_polygon, polygon_from_points, polygon_results
from labeling.validate import validate_tasks
from tests.real_parts import missing, require_module

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AMW_GHANA = (
    SHARED
    / "amazon-mining-watch/outputs/44px_v2.8/mining_ghana_ashanti_v44px_v2.8_2017-2020.geojson"
)
WEST_AFRICA = SHARED / "asm-map-west-africa" / "gt_asm_shapes.shp"


def test_brush_rle_round_trip_and_reference_decoder():
    ref = require_module("label_studio_sdk.converter.brush")  # label-studio-converter's
    mask = np.zeros((37, 53), bool)
    mask[5:30, 7:40] = True
    mask[12:20, 15:25] = False  # a hole
    rle = brush.encode_mask(mask)
    assert np.array_equal(brush.decode_mask(rle, 37, 53), mask)
    # Label Studio's reference decoder reads what we write ...
    assert np.array_equal(ref.decode_rle(rle).reshape(37, 53, 4)[:, :, 3] > 0, mask)
    # ... and we read what the reference encoder writes, literal runs and colours included.
    rgba = np.zeros((37, 53, 4), np.uint8)
    rgba[mask] = (230, 85, 13, 200)
    rgba[0, :5] = np.random.default_rng(1).integers(1, 255, (5, 4))
    assert np.array_equal(brush.decode(ref.encode_rle(rgba.ravel())), rgba.ravel())


def test_brush_rle_refuses_bad_input():
    mask = np.ones((8, 8), bool)
    with pytest.raises(AsmSpotterError, match="truncated"):
        brush.decode(brush.encode_mask(mask)[:9])
    with pytest.raises(AsmSpotterError, match="expected 4x4x4"):
        brush.decode_mask(brush.encode_mask(mask), 4, 4)
    with pytest.raises(AsmSpotterError, match="header"):
        brush.decode([1, 2])


def test_percent_units_round_trip_to_pixels():
    # 0 % is the picture's left/top edge and 100 % its right/bottom edge, for any aspect ratio.
    poly = polygon_from_points([[0, 0], [100, 0], [100, 100], [0, 100]], 200, 50)
    assert poly.bounds == (0, 0, 200, 50)
    tri = shapely.Polygon([(10.25, 3.5), (150, 3.5), (80, 40)])
    back = polygon_from_points(points_from_polygon(tri, 200, 50), 200, 50)
    assert back.symmetric_difference(tri).area < 1e-3
    (result,) = polygon_results(tri, "pond", 200, 50, score=0.7)
    assert result["value"]["polygonlabels"] == ["pond"] and result["score"] == 0.7
    assert result["original_width"] == 200 and result["to_name"] == "image"


def test_label_config_has_both_tools_on_both_views():
    xml = label_config()
    assert xml.count("<PolygonLabels") == 2 and xml.count("<BrushLabels") == 2
    assert 'value="$image"' in xml and 'value="$false_color"' in xml


def test_percentile_stretch():
    values = np.stack([np.linspace(0, 1, 100).reshape(10, 10)] * 3).astype(np.float32)
    values[:, 0, 0] = np.nan
    img = percentile_stretch(values, 0, 100)
    assert img.shape == (10, 10, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [0, 0, 0] and img[-1, -1].tolist() == [255, 255, 255]
    fc = composite(values, ["B04", "B03", "B02"], ("B02", "B04", "B03"))
    assert fc.shape == (10, 10, 3)
    with pytest.raises(KeyError):
        composite(values, ["B04", "B03", "B02"], ("B12", "B08", "B04"))


def test_validation_without_server_keeps_ground_truth():
    def task(annotations):
        return {
            "id": 1,
            "data": {"width": 10, "height": 10, "chip_id": "c"},
            "annotations": annotations,
        }

    square = {
        "type": "polygonlabels",
        "original_width": 10,
        "original_height": 10,
        "value": {"points": [[0, 0], [50, 0], [50, 50], [0, 50]], "polygonlabels": ["pit"]},
    }
    latest = {"id": 2, "result": [], "updated_at": "2026-02-01", "completed_by": 3}
    ground = {
        "id": 1,
        "result": [square],
        "updated_at": "2026-01-01",
        "completed_by": 4,
        "ground_truth": True,
    }
    clean, report = validate_tasks([task([ground, latest])])
    assert clean[0].annotation == 1 and len(clean[0].sites) == 1
    assert clean[0].sites[0].mask.sum() == 25
    assert report.counts() == {"conflict:resolved": 1}


def _chip_over(geom_wgs84, size=96):
    lon, lat = geom_wgs84.centroid.x, geom_wgs84.centroid.y
    crs = utm_crs_for(lon, lat)
    cx, cy = reproject(geom_wgs84.centroid, "EPSG:4326", crs).coords[0]
    x0, y0 = round(cx / 10) * 10 - size * 5, round(cy / 10) * 10 + size * 5
    t = Affine(10, 0, x0, 0, -10, y0)
    data = {"crs": crs.to_string(), "transform": list(t)[:6], "width": size, "height": size}
    return data, t, crs


@pytest.mark.parametrize("source", [AMW_GHANA, WEST_AFRICA], ids=["amazon-mining-watch", "asm-map"])
def test_existing_polygons_become_chip_predictions(source):
    if not source.is_file():
        missing(f"real data {source} is absent")
    predictor = PolygonPredictor(source, label="pit", score=0.9)
    geoms = predictor.source.geometries
    # A chip over the first polygon and, for the shapefile, over its one invalid drawing.
    targets = [0] + [i for i, g in enumerate(geoms) if not g.is_valid][:1]
    for i in targets:
        data, transform, crs = _chip_over(geoms[i])
        sites = predictor.predict(Path("unused.tif"), data)
        assert sites and all(s.label == "pit" and s.score == 0.9 for s in sites)
        assert all(s.geometry.is_valid for s in sites)
        got = shapely.union_all([to_map_space(s.geometry, transform) for s in sites])
        frame = to_map_space(box(0, 0, data["width"], data["height"]), transform)
        fixed = shapely.make_valid(shapely.force_2d(geoms[i]))
        expected = reproject(fixed, "EPSG:4326", crs).intersection(frame)
        assert got.intersection(expected).area >= 0.99 * expected.area
        mask = geometry_to_mask(
            shapely.union_all([s.geometry for s in sites]),
            Affine.identity(),
            (data["height"], data["width"]),
        )
        assert mask.any()


def test_service_predictions_land_on_chip_pixels(tmp_path):
    """Pre-annotations from the real gRPC service (rule model standing in for a bundle)."""
    from shapely.geometry import Point

    from labeling.predict import ServicePredictor
    from service.server import DetectionServer, ServerConfig
    from tests.service_support import WaterIndexModel, grid, make_tile

    ponds = [Point(16, 20).buffer(6), Point(44, 40).buffer(8)]
    tile, _ = make_tile(tmp_path / "ponds.tif", 64, ponds)
    g = grid(64)
    data = {"crs": g.crs.to_string(), "transform": list(g.transform)[:6], "width": 64, "height": 64}
    srv = DetectionServer(
        ServerConfig(address="127.0.0.1:0", max_active=1, max_queued=4),
        model=WaterIndexModel(chip_size=64),
    )
    srv.start()
    srv.load()
    try:
        predictor = ServicePredictor(f"127.0.0.1:{srv.port}", min_score=0.5)
        try:
            sites = predictor.predict(tile, data)
        finally:
            predictor.close()
    finally:
        srv.stop()
    assert predictor.model_version == "water-index-0.0.1"
    assert len(sites) == 2 and {s.label for s in sites} == {"pond"}
    for pond in ponds:
        best = max(sites, key=lambda s: s.geometry.intersection(pond).area)
        assert best.geometry.symmetric_difference(pond).area < 0.25 * pond.area
        assert best.score == pytest.approx(0.9)


def test_prediction_with_a_hole_is_sent_as_a_brush_mask():
    from labeling.regions import Site, site_results

    ring = np.zeros((20, 20), bool)
    ring[2:18, 2:18] = True
    ring[8:12, 8:12] = False
    (result,) = site_results(Site("pond", mask=ring, score=0.4), 20, 20)
    assert result["type"] == "brushlabels" and result["score"] == 0.4
    assert np.array_equal(brush.decode_mask(result["value"]["rle"], 20, 20), ring)
    solid = site_results(Site("pit", mask=ring | ~ring, score=0.4), 20, 20)
    assert [r["type"] for r in solid] == ["polygonlabels"]


def test_split_keeps_whole_scenes_or_regions_together():
    from labeling.export import assign_splits
    from labeling.validate import CleanTask, Report

    def task(i, scene, col):
        t = [10, 0, 512000 + col * 2560, 0, -10, 800000]  # 512 km: a cell edge
        data = {"scene_id": scene, "crs": "EPSG:32630", "transform": t, "width": 256, "height": 256}
        return CleanTask({"id": i, "data": data}, None, None, [])

    tasks = [task(i, f"S{i % 3}", i) for i in range(12)]
    by_scene = assign_splits(tasks, 0.3, "scene", 10.0, 0, Report())
    for scene in ("S0", "S1", "S2"):
        assert (
            len({by_scene[t.task["id"]] for t in tasks if t.task["data"]["scene_id"] == scene}) == 1
        )
    assert set(by_scene.values()) == {"train", "val"}
    by_region = assign_splits(tasks, 0.3, "region", 10.24, 0, Report())
    for first in range(0, 12, 4):  # 4 chips of 2.56 km per 10.24 km cell
        assert len({by_region[i] for i in range(first, first + 4)}) == 1
    assert set(by_region.values()) == {"train", "val"}
    report = Report()
    assert set(assign_splits(tasks[:1], 0.3, "scene", 10.0, 0, report).values()) == {"train"}
    assert report.issues and report.issues[0].problem == "split"


def test_west_africa_labels_need_a_mapping(capsys):
    # Before: --label-field label matched no "pit"/"pond" value and every polygon silently
    # became the default class.
    if not WEST_AFRICA.is_file():
        missing(f"real data {WEST_AFRICA} is absent")
    with pytest.raises(AsmSpotterError) as err:
        PolygonPredictor(WEST_AFRICA, label_field="label")
    assert "['0', '1', '2']" in str(err.value) and "--label-map" in str(err.value)
    mapped = PolygonPredictor(
        WEST_AFRICA, label_field="label", label_map={"0": "pit", "1": "skip", "2": "pond"}
    )
    assert len(mapped.source) == 447  # the two large-scale (label 1) mines are left out
    assert mapped.classes.count("pit") == 314 and mapped.classes.count("pond") == 133
    PolygonPredictor(WEST_AFRICA)  # no field named: every polygon is --label, and it says so
    assert "its field 'label' holds ['0', '1', '2']" in capsys.readouterr().err


# ---- label predict --polygons: a file in the wrong CRS, polygons that miss every chip ----

# A 300 m square pit near Obuasi (Ghana, UTM zone 30N) and two chips: one over it, one in Morocco.
PIT_UTM30 = box(628000, 690000, 628300, 690300)
PIT_WGS84 = reproject(PIT_UTM30, "EPSG:32630", "EPSG:4326")
FAR_AWAY = box(-8.01, 31.0, -8.0, 31.01)  # the 29RKH sample tile's area
ELSEWHERE = box(-70.5, -13.0, -70.49, -12.99)  # Madre de Dios, Peru


def _polygons(path: Path, geom, crs: str | None) -> Path:
    """One polygon with a `label` field, as GeoJSON (crs None: no `crs` member) or GeoPackage."""
    import warnings

    pyogrio = require_module("pyogrio")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")
        pyogrio.raw.write(
            path,
            np.array([shapely.to_wkb(geom)], dtype=object),
            [np.array(["pit"], dtype=object)],
            ["label"],
            driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON",
            geometry_type="Polygon",
            crs=crs,
        )
    return path


class _Tasks:
    """Label Studio's task and prediction calls as push_predictions makes them, recorded."""

    def __init__(self, chips: list[dict]) -> None:
        self.created: list[dict] = []
        self.tasks = self
        self.predictions = self
        self._tasks = [
            type("Task", (), {"id": i + 1, "data": data, "predictions": []})()
            for i, data in enumerate(chips)
        ]

    def list(self, project: int, resolve_uri: bool) -> list:
        return self._tasks

    def create(self, task: int, **prediction) -> None:
        self.created.append({"task": task, **prediction})


@pytest.mark.parametrize(
    ("name", "geom", "crs", "words"),
    [
        # GeoJSON without a `crs` member is WGS84 by definition: UTM numbers are out of range
        ("utm-without-crs.geojson", PIT_UTM30, None, "outside the range of EPSG:4326"),
        ("degrees-in-utm.gpkg", PIT_WGS84, "EPSG:32630", "look like degrees"),
        ("utm-in-degrees.gpkg", PIT_UTM30, "EPSG:4326", "outside the range of EPSG:4326"),
    ],
)
def test_polygons_in_the_wrong_crs_are_refused(tmp_path, name, geom, crs, words):
    """Coordinates outside the range of the declared (or assumed) CRS: CRS_MISMATCH at once,
    naming the extent, before any task is touched; never an empty prediction per task."""
    path = _polygons(tmp_path / name, geom, crs)
    with pytest.raises(AsmSpotterError) as err:
        PolygonPredictor(path)
    assert err.value.reason == "CRS_MISMATCH" and err.value.path == str(path)
    assert words in str(err.value) and "ogr2ogr -a_srs" in str(err.value)


def test_polygons_that_miss_every_chip_add_nothing(tmp_path):
    from labeling.predict import push_predictions

    over, _, _ = _chip_over(PIT_WGS84)
    away, _, _ = _chip_over(FAR_AWAY)
    # A file right about itself: the chip over the pit gets it, the other one an empty prediction.
    good = PolygonPredictor(_polygons(tmp_path / "pit.gpkg", PIT_UTM30, "EPSG:32630"))
    ls = _Tasks([over, away])
    assert push_predictions(ls, 1, good, tmp_path) == (2, 1)
    assert [len(p["result"]) > 0 for p in ls.created] == [True, False]
    # The same numbers declared in the neighbouring zone (valid there, 6 degrees east) and a file
    # of another area: no polygon lands on any chip, so nothing is written and the user is told.
    wrong_zone = _polygons(tmp_path / "zone31.gpkg", PIT_UTM30, "EPSG:32631")
    elsewhere = _polygons(tmp_path / "peru.geojson", ELSEWHERE, None)
    for path in (wrong_zone, elsewhere):
        predictor = PolygonPredictor(path)  # in range of its CRS: accepted on its own
        ls = _Tasks([over, away, away])
        with pytest.raises(AsmSpotterError) as err:
            push_predictions(ls, 1, predictor, tmp_path)
        assert ls.created == []
        message = str(err.value)
        assert err.value.reason == "INVALID_ARGUMENT" and err.value.path == str(path)
        assert "none of the 1 polygons overlaps any of the 3 chips" in message
        assert "check the file's area and CRS; nothing was added" in message
        assert "lon " in message and "lat " in message


def test_a_file_with_no_polygon_to_suggest_is_refused(tmp_path):
    """All polygons skipped by --label-map (or none at all): one clear refusal at once, not a
    ValueError from an empty extent after the tasks were listed."""
    path = _polygons(tmp_path / "pit.gpkg", PIT_UTM30, "EPSG:32630")
    with pytest.raises(AsmSpotterError) as err:
        PolygonPredictor(path, label_field="label", label_map={"pit": "skip"})
    assert err.value.reason == "INVALID_ARGUMENT" and err.value.path == str(path)
    assert "no polygons to suggest: the file has 1 feature(s), 1 skipped by --label-map" in str(
        err.value
    )
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(AsmSpotterError, match="no polygons to suggest: the file has 0 feature"):
        PolygonPredictor(empty)
