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


# -- static STAC (no server): the same items as files, a catalog, an item collection -------------
def _area_file(tmp_path: Path) -> Path:
    area = tmp_path / "area.geojson"
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [AREA]}}  # fmt: skip
    area.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return area


@pytest.fixture(scope="module")
def static_stac(tmp_path_factory):
    """The test items written as item files, an item collection and a static catalog whose
    asset hrefs are relative to the item files."""
    if not L2A_DIR.is_dir():
        missing(f"{L2A_DIR} is absent")
    import pystac

    from monitoring.testing.stac_server import build_items

    root = tmp_path_factory.mktemp("static")
    items = build_items(L2A_DIR, root / "data")
    for item in items:  # plain paths: what a catalog written on disk holds
        for asset in item["assets"].values():
            asset["href"] = asset["href"].removeprefix("file://")
    (root / "items").mkdir()
    for item in items:
        (root / "items" / f"{item['id']}.json").write_text(json.dumps(item))
    fc = {"type": "FeatureCollection", "features": items}
    (root / "search.geojson").write_text(json.dumps(fc))
    catalog = pystac.Catalog("s2", "Sentinel-2 L2A test items")
    for item in items:
        catalog.add_item(pystac.Item.from_dict(item))
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root, items


@pytest.mark.parametrize(
    "source", ["items", "items/*.json", "search.geojson", "catalog/catalog.json", "catalog"]
)
def test_fetch_from_static_stac_matches_numpy(static_stac, tmp_path, capsys, source):
    root, items = static_stac
    out = tmp_path / "composite.tif"
    code = main(
        ["fetch", str(_area_file(tmp_path)), "--start", "2020-02-01", "--end", "2020-03-31",
         "-o", str(out), "--stac", str(root / source), "--resolution", "100", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "median of 2 scene(s)" in capsys.readouterr().out
    with rasterio.open(out) as ds:
        want = _independent(items, (ds.height, ds.width), ds.transform, ds.crs)
        np.testing.assert_array_equal(ds.read(), want)


def test_fetch_static_filters_dates_and_clouds(static_stac, tmp_path, capsys):
    root, _ = static_stac
    args = ["fetch", str(_area_file(tmp_path)), "-o", str(tmp_path / "x.tif"),
            "--stac", str(root / "items"), "--resolution", "100", "--quiet"]  # fmt: skip
    assert main([*args, "--start", "2020-02-19", "--end", "2020-02-19"]) == 0
    assert "median of 1 scene(s) on 2020-02-19" in capsys.readouterr().out
    assert main([*args, "--start", "2020-02-01", "--end", "2020-03-31", "--max-cloud", "1"]) == 2
    assert capsys.readouterr().err.startswith("error [ALL_NODATA]")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    return lines[0]


def test_fetch_mistakes_are_one_line_before_any_network(tmp_path, capsys):
    # An address nothing listens on: reaching the network would say UNREACHABLE instead.
    area = _area_file(tmp_path)
    args = ["fetch", str(area), "-o", str(tmp_path / "x.tif"), "--stac", "http://127.0.0.1:9/"]
    ok = ["--start", "2024-01-01", "--end", "2024-01-31"]
    assert main([*args, "--start", "2024-02-30", "--end", "2024-03-31"]) == 2
    assert "'2024-02-30' is not a date that exists" in _one_line(capsys)
    assert main([*args, "--start", "2024-03-31", "--end", "2024-03-01"]) == 2
    assert "is before --start" in _one_line(capsys)
    utm = tmp_path / "utm.geojson"
    utm.write_text(area.read_text().replace("-11.8, 24.5", "350000, 2710000"))
    assert main(["fetch", str(utm), *args[2:], *ok]) == 2
    assert _one_line(capsys).startswith("error [CRS_MISMATCH]: ")
    assert main([*args, *ok]) == 2
    assert _one_line(capsys).startswith("error [UNREACHABLE]: cannot reach http://127.0.0.1:9/")
    not_stac = tmp_path / "notes.json"
    not_stac.write_text('{"type": "Topology"}')
    assert main([*args[:-1], str(not_stac), *ok]) == 2
    assert "not a STAC API, catalog" in _one_line(capsys)
    assert main([*args[:-1], str(tmp_path / "missing"), *ok]) == 2
    assert _one_line(capsys).startswith("error [FILE_NOT_FOUND]: ")


def test_fetch_refuses_a_resolution_finer_than_the_imagery(static_stac, tmp_path, capsys):
    # The sample's 10 m bands are stored at 100 m: a "10 m" composite of it would pass as 10 m
    # imagery everywhere downstream.
    root, _ = static_stac
    args = ["fetch", str(_area_file(tmp_path)), "-o", str(tmp_path / "x.tif"),
            "--stac", str(root / "items"), "--start", "2020-02-01"]  # fmt: skip
    assert main([*args, "--end", "2020-03-31"]) == 2  # --resolution defaults to 10
    line = _one_line(capsys)
    assert line.startswith("error [GSD_MISMATCH]: ") and "use --resolution 100" in line
    assert not (tmp_path / "x.tif").exists()


def test_fetch_from_one_item_file(static_stac, tmp_path, capsys):
    # Before: `--stac-url ITEM.json` ended in pystac-client's ClientTypeError traceback.
    root, items = static_stac
    item = root / "items" / f"{items[0]['id']}.json"
    out = tmp_path / "one.tif"
    args = ["fetch", str(_area_file(tmp_path)), "--start", "2020-02-01", "--end", "2020-03-31",
            "-o", str(out), "--stac-url", str(item), "--resolution", "100"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "median of 1 scene(s) on 2020-02-19" in capsys.readouterr().out
