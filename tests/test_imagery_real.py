"""The imagery core on real Sentinel-2 data, checked against values read independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from imagery import scaling
from imagery.scene import SCL_MASKED, BandFileScene, StackedScene, open_scene
from imagery.stack import stack
from imagery.windows import WindowSpec, iter_windows
from tests.conftest import L1C_DIR, L2A_DIR


def _raw(path: Path, **kwargs: object) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, **kwargs)


def test_l2a_cog_folder_with_stac_item(shared_data: Path) -> None:
    scene = open_scene(L2A_DIR)
    assert isinstance(scene, BandFileScene)
    assert scene.sensor.name == "sentinel2-l2a"
    assert scene.bands == ("B02", "B03", "B04", "B08", "B11", "B12")
    assert scene.grid.crs.to_epsg() == 32629
    assert (scene.grid.height, scene.grid.width) == (1098, 1098)  # decimated 10 m bands
    assert scene.scene_id == "S2A_29RKH_20200219_0_L2A"
    assert scene.dn_offset == 0.0  # baseline 02.14 from the STAC item: no BOA offset
    data = scene.read()
    raw = _raw(L2A_DIR / "B02.tif")
    expected = np.where(raw == 0, np.nan, raw.astype(np.float32) / 10000)
    np.testing.assert_array_equal(np.isnan(data[0]), raw == 0)
    np.testing.assert_allclose(data[0], expected, rtol=1e-6, equal_nan=True)
    assert 0.0 < np.nanmedian(data[0]) < 0.5  # reflectance, not DN


def test_l2a_20m_bands_resampled_to_10m_grid(shared_data: Path) -> None:
    scene = open_scene(L2A_DIR)
    b11 = scene.read()[4]
    raw20 = _raw(L2A_DIR / "B11.tif").astype(np.float32) / 10000
    assert b11.shape == (1098, 1098) and raw20.shape == (549, 549)
    # Every 2x2 block of the resampled band averages back to its 20 m pixel (bilinear keeps
    # means); compare away from the borders where bilinear reaches into nodata-free neighbours.
    blocks = b11.reshape(549, 2, 549, 2).mean(axis=(1, 3))
    inner = (slice(2, -2), slice(2, -2))
    assert np.nanmean(np.abs(blocks[inner] - raw20[inner])) < 0.003
    assert np.corrcoef(blocks[inner].ravel(), raw20[inner].ravel())[0, 1] > 0.98


def test_l2a_scl_cloud_mask_matches_scl(shared_data: Path) -> None:
    scene = open_scene(L2A_DIR)
    cloud = scene.read_cloud_mask()
    scl = _raw(L2A_DIR / "SCL.tif")
    expected = np.isin(np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1), SCL_MASKED)
    assert cloud.shape == (1098, 1098)
    assert cloud.any()  # the tile has 4 % cloud and cirrus
    np.testing.assert_array_equal(cloud, expected)


def test_l1c_jp2_folder_native_resolutions(shared_data: Path) -> None:
    scene = open_scene(L1C_DIR / "IMG_DATA")
    assert scene.sensor.name == "sentinel2-l1c"
    assert scene.grid.crs.to_epsg() == 32633 and scene.grid.res == 10.0
    assert (scene.grid.height, scene.grid.width) == (768, 1536)
    assert scene.scene_id == "T33UUU_20170216T102101"
    assert scene.read_cloud_mask() is None  # L1C has no SCL
    window = Window(100, 50, 300, 200)
    data = scene.read(window)
    assert data.shape == (6, 200, 300)
    b08 = _raw(next((L1C_DIR / "IMG_DATA").glob("*_B08.jp2")), window=window)
    np.testing.assert_allclose(data[3], b08 / 10000, rtol=1e-6)
    # The 20 m SWIR band lands on the 10 m grid; compare with rasterio's own upsampling.
    with rasterio.open(next((L1C_DIR / "IMG_DATA").glob("*_B12.jp2"))) as src:
        assert src.res == (20.0, 20.0)
        up = src.read(1, out_shape=(768, 1536), resampling=Resampling.bilinear) / 10000
    diff = np.abs(data[5] - up[50:250, 100:400])
    assert np.median(diff) < 0.002


def test_processing_baseline_offset() -> None:
    assert scaling.dn_offset("02.14") == 0.0
    assert scaling.dn_offset("04.00") == -1000.0
    assert scaling.dn_offset("S2B_MSIL2A_20230105T101329_N0509_R022_T32TQM") == -1000.0
    assert scaling.dn_offset("S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU") == 0.0
    from datetime import date

    assert scaling.dn_offset(None, date(2023, 5, 1)) == -1000.0
    assert scaling.dn_offset(None, date(2020, 5, 1)) == 0.0
    refl = scaling.dn_to_reflectance(np.array([1000, 3000], np.uint16), -1000.0)
    np.testing.assert_allclose(refl, [0.0, 0.2])


def test_stack_round_trip_keeps_values_and_masks_clouds(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "stack.tif"
    stats = stack(L2A_DIR, out, progress=False)
    source = open_scene(L2A_DIR)
    expected = source.read()
    cloud = source.read_cloud_mask()
    expected[:, cloud] = np.nan
    tile = open_scene(out)
    assert isinstance(tile, StackedScene)
    assert tile.bands == source.bands and tile.grid.crs == source.grid.crs
    assert tile.grid.transform == source.grid.transform
    assert tile.scene_id == source.scene_id and tile.datetime == source.datetime
    # Same values to the DN; GDAL's warper may round a 20 m band's bilinear sample one DN
    # differently at the 1024 px block seams of the block-wise copy.
    np.testing.assert_allclose(tile.read(), expected, atol=1.01e-4, equal_nan=True)
    assert stats["cloud_fraction"] == pytest.approx(cloud.mean())
    with rasterio.open(out) as src:  # a real COG: tiled with overviews
        assert src.profile["tiled"] and src.overviews(1)
        assert src.descriptions == source.bands
        assert src.scales[0] == pytest.approx(1e-4)


def test_windows_cover_scene_and_match_full_read(shared_data: Path) -> None:
    scene = open_scene(L1C_DIR / "IMG_DATA")
    full = scene.read()
    h, w = scene.grid.height, scene.grid.width
    spec = WindowSpec(size=256, overlap=32)
    covered = np.zeros((h, w), bool)
    for win in iter_windows(h, w, spec):
        assert (win.width, win.height) == (256, 256)
        r, c = int(win.row_off), int(win.col_off)
        covered[r : r + 256, c : c + 256] = True
        np.testing.assert_array_equal(scene.read(win), full[:, r : r + 256, c : c + 256])
    assert covered.all()


def test_windows_edges_and_small_scenes() -> None:
    spec = WindowSpec(size=100, overlap=20)
    wins = list(iter_windows(250, 130, spec))
    rows = sorted({int(w.row_off) for w in wins})
    cols = sorted({int(w.col_off) for w in wins})
    assert rows == [0, 80, 150] and cols == [0, 30]  # last ones end on the edge
    small = list(iter_windows(40, 60, spec))
    assert len(small) == 1 and (small[0].height, small[0].width) == (40, 60)
    with pytest.raises(ValueError):
        WindowSpec(size=64, overlap=64)
