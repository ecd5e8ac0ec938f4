"""Mask <-> polygon <-> map on the real OSM water polygons of the L1C sample, and areas in m²."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin
from shapely.geometry import Polygon, box

from imagery.coco import mask_to_segmentation, rle_decode, rle_encode
from imagery.geometry import (
    WGS84,
    area_m2,
    geometry_to_mask,
    iou,
    map_to_pixel,
    mask_to_geometry,
    pixel_to_map,
    reproject,
    to_map_space,
    to_pixel_space,
)
from imagery.scene import open_scene
from imagery.vector import read_features, write_features
from tests.conftest import L1C_DIR

OSM_WATER = L1C_DIR / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"


@pytest.fixture(scope="module")
def water(shared_data: Path):
    scene = open_scene(L1C_DIR / "IMG_DATA")
    features = read_features(OSM_WATER)
    assert len(features) == 604 and features.crs.to_epsg() == 32633
    frame = box(*scene.grid.bounds)
    inside = [shapely.make_valid(g) for g in features.geometries if frame.contains(g)]
    return scene.grid, inside


def test_mask_polygon_mask_round_trip_on_real_water_bodies(water) -> None:
    grid, polygons = water
    assert len(polygons) > 100
    ious = []
    for poly in polygons:
        mask = geometry_to_mask(poly, grid.transform, (grid.height, grid.width))
        if mask.sum() < 4:
            continue
        outline = mask_to_geometry(mask, grid.transform)
        assert outline is not None and outline.is_valid
        back = geometry_to_mask(outline, grid.transform, (grid.height, grid.width))
        inter = (mask & back).sum()
        ious.append(inter / (mask | back).sum())
        # The outline is the true shape to pixel accuracy.
        assert iou(outline, poly) > 0.6
    assert min(ious) >= 0.95, f"worst mask IoU {min(ious):.3f}"


def test_holes_survive_mask_to_polygon(water) -> None:
    grid, _ = water
    ring = Polygon(
        [(0, 0), (40, 0), (40, 40), (0, 40)], holes=[[(10, 10), (30, 10), (30, 30), (10, 30)]]
    )
    mask = geometry_to_mask(ring, from_origin(0, 40, 1, 1), (40, 40))
    outline = mask_to_geometry(mask, from_origin(0, 40, 1, 1))
    assert len(outline.interiors) == 1 and outline.area == pytest.approx(1600 - 400)
    seg = mask_to_segmentation(mask)
    assert isinstance(seg, dict)  # holes -> RLE, which decodes to the same mask
    np.testing.assert_array_equal(rle_decode(seg), mask)
    np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)


def test_areas_match_shapely_in_utm(water) -> None:
    grid, polygons = water
    for poly in polygons[:100]:
        lonlat = reproject(poly, grid.crs, WGS84)
        assert area_m2(lonlat, WGS84) == pytest.approx(poly.area, rel=0.01)
        assert area_m2(poly, grid.crs) == pytest.approx(poly.area)


def test_pixel_map_conversions_invert(water) -> None:
    grid, polygons = water
    rows, cols = np.array([0, 10, 767]), np.array([0, 20, 1535])
    xs, ys = pixel_to_map(grid.transform, rows, cols)
    r, c = map_to_pixel(grid.transform, xs, ys)
    np.testing.assert_allclose(r, rows + 0.5)
    np.testing.assert_allclose(c, cols + 0.5)
    poly = polygons[0]
    back = to_map_space(to_pixel_space(poly, grid.transform), grid.transform)
    assert iou(back, poly) == pytest.approx(1.0)


def test_real_asm_shapes_read_reproject_and_write(shared_data: Path, tmp_path: Path) -> None:
    sites = read_features(shared_data / "asm-map-west-africa" / "gt_asm_shapes.shp")
    assert len(sites) == 449
    invalid = [g for g in sites.geometries if not g.is_valid]
    assert len(invalid) == 1  # one geometry is invalid as drawn; make_valid repairs it
    assert shapely.make_valid(invalid[0]).is_valid
    areas_ha = np.array([area_m2(shapely.make_valid(g), sites.crs) for g in sites.geometries]) / 1e4
    assert 1.0 < np.median(areas_ha) < 3.0  # the README's median 1.9 ha
    out = write_features(tmp_path / "sites.gpkg", sites.geometries[:10], sites.properties[:10])
    again = read_features(out)
    assert again.properties == sites.properties[:10]
    assert all(a.equals(b) for a, b in zip(again.geometries, sites.geometries[:10], strict=True))
