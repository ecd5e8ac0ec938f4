"""The transport-free predictor: windows, seam merging, georeferencing, nodata, batching."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS
from shapely.geometry import Point, Polygon, box, shape

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import area_m2, iou, reproject
from service.merge import Detection, SeamMerger
from service.predictor import DetectOptions, Predictor
from tests.service_support import UTM, WaterIndexModel, make_tile


@pytest.fixture
def predictor():
    p = Predictor(WaterIndexModel(chip_size=64), overlap=16, max_batch=4)
    yield p
    p.close()


def _best(site_geom, truth):
    return max(iou(site_geom, t) for t in truth)


def test_site_straddling_seams_is_one_polygon(tmp_path, predictor):
    # Windows 64 px with 16 px overlap start at 0, 48, 96: every site below crosses a seam.
    ponds = [
        box(30, 8, 90, 40),  # wider than the overlap: each window sees only a part
        Point(56, 100).buffer(10),  # inside the overlap band: seen whole twice
        Polygon([(40, 52), (75, 54), (70, 84), (45, 80)]),  # crosses vertical + horizontal seams
        Point(140, 140).buffer(6),  # away from seams, at the scene's corner window
    ]
    path, truth = make_tile(tmp_path / "seams.tif", 160, ponds)
    result = predictor.detect_file(path, DetectOptions(output_crs="EPSG:32630"))
    assert result.window_count == 9
    assert len(result.sites) == len(ponds)  # no duplicates, no halves
    for site in result.sites:
        assert site.class_name == "pond"
        assert site.score == pytest.approx(0.9)
        assert _best(site.geometry, truth) >= 0.9
        assert isinstance(site.geometry, Polygon)
        assert site.tile_id == "seams" and site.site_id.startswith("seams/")
    matched = {int(np.argmax([iou(s.geometry, t) for t in truth])) for s in result.sites}
    assert matched == set(range(len(ponds)))


def test_output_crs_area_and_bbox(tmp_path, predictor):
    path, truth = make_tile(tmp_path / "one.tif", 100, [box(20, 20, 40, 30)])
    result = predictor.detect_file(path)  # default EPSG:4326
    (site,) = result.sites
    assert result.crs == "EPSG:4326"
    lon, lat = site.geometry.centroid.coords[0]
    assert -10 < lon < 0 and 5 < lat < 8  # UTM 30N, 600 km E / 700 km N
    assert site.area_m2 == pytest.approx(20 * 10 * 100, rel=0.02)  # 200 px of 10 m
    assert site.area_m2 == pytest.approx(area_m2(site.geometry, "EPSG:4326"), rel=0.01)
    assert site.bbox == pytest.approx(site.geometry.bounds)
    back = reproject(site.geometry, "EPSG:4326", UTM)
    assert iou(back, truth[0]) > 0.95


def test_min_score_and_max_detections(tmp_path, predictor):
    ponds = [Point(20 + 30 * i, 50).buffer(6) for i in range(4)]
    path, _ = make_tile(tmp_path / "four.tif", 140, ponds)
    assert len(predictor.detect_file(path).sites) == 4
    assert len(predictor.detect_file(path, DetectOptions(max_detections=2)).sites) == 2
    assert predictor.detect_file(path, DetectOptions(min_score=0.95)).sites == []


def test_windows_run_in_batches(tmp_path):
    model = WaterIndexModel(chip_size=32)
    predictor = Predictor(model, overlap=8, max_batch=4)
    try:
        path, _ = make_tile(tmp_path / "b.tif", 100, [Point(50, 50).buffer(5)])
        result = predictor.detect_file(path)
    finally:
        predictor.close()
    assert result.window_count == 16
    assert sum(model.calls) == 16 and max(model.calls) == 4


def test_small_tile_is_padded(tmp_path, predictor):
    path, truth = make_tile(tmp_path / "small.tif", 40, [box(10, 10, 20, 20)])
    (site,) = predictor.detect_file(path, DetectOptions(output_crs="EPSG:32630")).sites
    assert iou(site.geometry, truth[0]) > 0.95


def test_all_nodata_tile(tmp_path, predictor):
    path, _ = make_tile(tmp_path / "empty.tif", 64, [], nodata_all=True)
    with pytest.raises(AsmSpotterError) as err:
        predictor.detect_file(path)
    assert err.value.reason is Reason.ALL_NODATA


def test_bad_options():
    with pytest.raises(AsmSpotterError, match="min_score"):
        DetectOptions(min_score=1.5)
    with pytest.raises(AsmSpotterError, match="output_crs"):
        DetectOptions(output_crs="EPSG:nope")


def test_streaming_emits_sites_before_the_end(tmp_path, predictor):
    ponds = [Point(20, 20).buffer(6), Point(140, 140).buffer(6)]
    path, _ = make_tile(tmp_path / "s.tif", 160, ponds)
    with predictor.open(path) as scene:
        steps = list(predictor.iter_detect(scene, DetectOptions(), "s"))
    first_with_site = next(i for i, s in enumerate(steps) if s.sites)
    assert steps[first_with_site].windows_done < steps[-1].windows_total  # before the last row
    assert sum(len(s.sites) for s in steps) == 2
    ids = [site.site_id for s in steps for site in s.sites]
    assert len(set(ids)) == 2


def test_merger_keeps_touching_neighbours_apart():
    # Two sites side by side across a seam, touching: the shared strip shows different shapes.
    left, right = (0, 0, 64, 64), (48, 0, 112, 64)
    a = Detection(box(30, 10, 56, 30), 0.8, 0, left)  # window 1 sees site A up to x=56
    b = Detection(box(56, 10, 64, 30), 0.6, 0, left)  # and a piece of site B
    c = Detection(box(48, 10, 56, 30), 0.8, 0, right)  # window 2 sees A's tail
    d = Detection(box(56, 10, 90, 30), 0.6, 0, right)  # and B
    merger = SeamMerger()
    merger.add([a, b])
    merger.add([c, d])
    sites = merger.flush()
    assert len(sites) == 2
    areas = sorted(s.geom.area for s in sites)
    assert areas == [26 * 20, 34 * 20]


def test_merged_score_is_area_weighted():
    half = Detection(box(40, 0, 64, 10), 0.5, 0, (0, 0, 64, 64))
    whole = Detection(box(40, 0, 70, 10), 0.9, 1, (48, 0, 112, 64))
    merger = SeamMerger()
    merger.add([half])
    merger.add([whole])
    (site,) = merger.flush()
    assert site.score == pytest.approx((240 * 0.5 + 300 * 0.9) / 540)
    assert site.class_index == 1 and site.parts == 2
    assert shape(site.geom.__geo_interface__).equals(box(40, 0, 70, 10))
    assert CRS.from_epsg(32630) == UTM


def test_several_model_workers_give_the_same_sites(tmp_path):
    path, _ = make_tile(tmp_path / "w.tif", 160, [Point(48, 30).buffer(12), box(30, 80, 90, 100)])
    results = []
    for workers in (1, 3):
        predictor = Predictor(WaterIndexModel(64), overlap=16, max_batch=2, model_workers=workers)
        try:
            results.append(predictor.detect_file(path, DetectOptions(output_crs="EPSG:32630")))
        finally:
            predictor.close()
    one, three = results
    assert len(one.sites) == len(three.sites) == 2
    for a, b in zip(one.sites, three.sites, strict=True):
        assert a.geometry.equals(b.geometry) and a.score == b.score


def test_site_scorer_rescores_merged_sites_before_min_score(tmp_path):
    """The per-site stage (e.g. a context verifier): every merged site reaches the scorer with its
    native-CRS outline and the open scene, and its new score meets min_score."""
    ponds = [Point(30, 40).buffer(12), Point(100, 40).buffer(5)]  # the first straddles a seam
    path, truth = make_tile(tmp_path / "two.tif", 140, ponds)
    seen = []

    def scorer(scene, found, min_score):
        assert min_score == 0.5  # the request's (the model has no default threshold)
        seen.extend(found)
        assert scene.read(None).shape[0] == 6  # the scene is open and readable
        return [c.rescored(0.9 if c.native.area > 1e4 else 0.3) for c in found]  # > 100 px

    p = Predictor(WaterIndexModel(chip_size=64), overlap=16, max_batch=4, scorer=scorer)
    try:
        sites = p.detect_file(path, DetectOptions(output_crs=UTM.to_string())).sites
    finally:
        p.close()
    assert len(seen) == 2
    assert max(c.parts for c in seen) >= 2  # merged across the seam before scoring
    assert [iou(c.native, truth[0]) > 0.9 for c in seen].count(True) == 1
    assert len(sites) == 1 and sites[0].score == 0.9 and iou(sites[0].geometry, truth[0]) > 0.9
