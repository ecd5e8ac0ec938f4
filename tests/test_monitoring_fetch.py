"""`asmspotter fetch` through a real STAC API (stac-fastapi-pgstac on 127.0.0.1) vs numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import rasterize

from asmspotter.cli import main
from imagery.scene import open_scene
from tests.real_parts import missing, require_module

from .conftest import L2A_DIR

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
MASKED_SCL = (0, 1, 3, 8, 9, 10)
AREA = [[-11.8, 24.5], [-11.3, 24.45], [-11.2, 24.9], [-11.75, 25.0], [-11.8, 24.5]]


@pytest.fixture(scope="module")
def stac_api(postgis_cluster, tmp_path_factory):
    require_module("stac_fastapi.pgstac")
    from monitoring.testing.stac_server import StacServer, build_items

    if not L2A_DIR.is_dir():
        missing(f"{L2A_DIR} is absent")
    work = tmp_path_factory.mktemp("stac")
    items = build_items(L2A_DIR, work)
    server = StacServer(postgis_cluster, items, work / "stac.log")
    yield server, items
    server.stop()


def _band_file(item: dict, band: str) -> Path:
    key = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16"}.get(
        band, "swir22" if band == "B12" else "scl"
    )
    return Path(item["assets"][key]["href"].removeprefix("file://"))


def _independent(items: list[dict], grid_shape, transform, crs) -> np.ndarray:
    """Median of SCL-clear DNs per pixel with plain rasterio reads on the 100 m band grid."""
    ref = rasterio.open(_band_file(items[0], "B02"))
    col0 = round((transform.c - ref.transform.c) / 100)
    row0 = round((ref.transform.f - transform.f) / 100)
    h, w = grid_shape
    stack = np.full((len(items), len(BANDS), h, w), np.nan)
    for t, item in enumerate(items):
        with rasterio.open(_band_file(item, "SCL")) as s:
            scl = np.repeat(np.repeat(s.read(1), 2, 0), 2, 1)  # 200 m -> 100 m
        for b, band in enumerate(BANDS):
            with rasterio.open(_band_file(item, band)) as s:
                dn = s.read(1).astype(np.float64)
            if dn.shape != scl.shape:
                dn = np.repeat(np.repeat(dn, 2, 0), 2, 1)
            dn[np.isin(scl, MASKED_SCL) | (dn == 0)] = np.nan
            stack[t, b] = dn[row0 : row0 + h, col0 : col0 + w]
    with np.errstate(all="ignore"):
        med = np.nanmedian(stack, axis=0)
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    area = shapely.transform(
        shapely.Polygon(AREA), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    inside = rasterize([(area, 1)], out_shape=(h, w), transform=transform).astype(bool)
    out = np.where(np.isfinite(med) & inside[None], np.rint(med), 0)
    return out.astype(np.uint16)


def test_fetch_composite_matches_numpy(stac_api, tmp_path, capsys):
    server, items = stac_api
    area = tmp_path / "area.geojson"
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [AREA]},
    }
    area.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp_path / "composite.tif"
    code = main(
        ["fetch", str(area), "--start", "2020-02-01", "--end", "2020-03-31", "-o", str(out),
         "--stac-url", server.url, "--resolution", "100", "--max-cloud", "50", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "median of 2 scene(s)" in capsys.readouterr().out
    with rasterio.open(out) as ds:
        got = ds.read()
        assert ds.block_shapes[0] == (512, 512) and ds.overviews(1)
        assert list(ds.descriptions) == BANDS and ds.nodata == 0
        assert ds.res == (100.0, 100.0) and ds.crs.to_epsg() == 32629
        want = _independent(items, (ds.height, ds.width), ds.transform, ds.crs)
    np.testing.assert_array_equal(got, want)
    # The cloud patch of the second date leaves only the first date there; elsewhere both count.
    assert (got > 0).mean() > 0.5 and (got == 0).any()
    with open_scene(out) as scene:  # a tile the rest of the project reads
        assert scene.bands == tuple(BANDS) and np.nanmax(scene.read()) < 1.5


def test_fetch_cloud_filter_and_empty_search(stac_api, tmp_path, capsys):
    server, _ = stac_api
    area = tmp_path / "area.geojson"
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [AREA]},
    }
    area.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    args = ["fetch", str(area), "-o", str(tmp_path / "x.tif"), "--stac-url", server.url,
            "--resolution", "100", "--quiet"]  # fmt: skip
    # Both items have 4% scene cloud cover: a 1% ceiling finds none -> one-line error, exit 2.
    assert main([*args, "--start", "2020-02-01", "--end", "2020-03-31", "--max-cloud", "1"]) == 2
    assert capsys.readouterr().err.startswith("error [ALL_NODATA]")
    assert main([*args, "--start", "2021-01-01", "--end", "2021-02-01"]) == 2
    assert not (tmp_path / "x.tif").exists()
