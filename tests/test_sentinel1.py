"""Sentinel-1 GRD reader on the real GCP-georeferenced sample in ../shared/data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject
from rasterio.windows import Window
from shapely.geometry import shape

from imagery.errors import ImageryError, Reason
from imagery.geometry import iou, mask_to_geometry
from imagery.geometry import reproject as reproject_geometry
from imagery.scene import open_scene
from imagery.sensors import SENTINEL1_GRD
from imagery.sentinel1 import GrdScene, open_grd
from imagery.windows import WindowSpec, iter_windows
from tests.real_parts import missing

S1_DIR = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "sentinel-l2a-grd-riotilerpds"
    / "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"
)
RES = 150.0  # coarse enough for quick full reads of the decimated sample (~200 m pixels)
# The documented no-LUT calibration, written out independently: A_sigma = A_beta / sqrt(sin 37.5°).
A_SIGMA = 237.0 / math.sqrt(math.sin(math.radians(37.5)))

if not S1_DIR.is_dir():
    missing(f"{S1_DIR} is absent")


@pytest.fixture(scope="module")
def scene() -> GrdScene:
    with open_grd(S1_DIR, resolution=RES) as s:
        yield s


@pytest.fixture(scope="module")
def full(scene: GrdScene) -> np.ndarray:
    return scene.read()


@pytest.fixture(scope="module")
def footprint_utm(scene: GrdScene):
    info = json.loads((S1_DIR / "productInfo.json").read_text())
    return reproject_geometry(shape(info["footprint"]), "EPSG:4326", scene.grid.crs)


def _reference_db(band_file: Path, scene: GrdScene) -> np.ndarray:
    """GDAL's own warp (thin-plate spline through the same GCPs) of DN², then the formula."""
    with rasterio.open(band_file) as src:
        gcps, gcp_crs = src.gcps
        intensity = src.read(1).astype(np.float32) ** 2
    g = scene.grid
    warped = np.full((g.height, g.width), np.nan, np.float32)
    reproject(
        intensity,
        warped,
        gcps=gcps,
        src_crs=gcp_crs,
        dst_crs=g.crs,
        dst_transform=g.transform,
        src_nodata=0,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
        SRC_METHOD="GCP_TPS",
    )
    return 10 * np.log10(warped / A_SIGMA**2)


def test_reads_both_polarisations(scene: GrdScene, full: np.ndarray) -> None:
    info = json.loads((S1_DIR / "productInfo.json").read_text())
    assert scene.sensor is SENTINEL1_GRD
    assert scene.bands == ("VV", "VH")
    assert scene.scene_id == info["id"]
    assert scene.datetime == info["startTime"] + "Z"
    assert full.dtype == np.float32
    assert full.shape == (2, scene.grid.height, scene.grid.width)
    vv, vh = np.nanmedian(full[0]), np.nanmedian(full[1])
    # co-polarised backscatter is stronger than cross-polarised over land and sea
    assert -25 < vh < vv < 5
    assert np.isfinite(full[~np.isnan(full)]).all()


def test_grid_is_utm_zone_of_footprint_centre(scene: GrdScene) -> None:
    info = json.loads((S1_DIR / "productInfo.json").read_text())
    lons = [p[0] for p in info["footprint"]["coordinates"][0][:-1]]
    zone = int((np.mean(lons) + 180) // 6) + 1  # 76.9°E -> zone 43
    assert zone == 43
    assert scene.grid.crs.to_epsg() == 32600 + zone
    assert scene.grid.res == RES and abs(scene.grid.transform.e) == RES


def test_grid_matches_product_footprint(scene: GrdScene, full: np.ndarray, footprint_utm) -> None:
    grid_bounds = np.array(scene.grid.bounds)
    assert np.abs(grid_bounds - np.array(footprint_utm.bounds)).max() < 2 * RES
    valid = mask_to_geometry(~np.isnan(full[0]), scene.grid.transform)
    # the raster's last ~25 columns are DN 0 (no data) inside the footprint: ~2% of its area
    assert iou(valid, footprint_utm) > 0.97


def test_nodata_outside_swath_is_nan(scene: GrdScene, full: np.ndarray, footprint_utm) -> None:
    g = scene.grid
    outside = ~rasterize(
        [(footprint_utm.buffer(2 * RES), 1)], out_shape=(g.height, g.width), transform=g.transform
    ).astype(bool)
    inside = rasterize(
        [(footprint_utm.buffer(-2 * RES), 1)], out_shape=(g.height, g.width), transform=g.transform
    ).astype(bool)
    assert outside.sum() > 0.2 * outside.size  # the swath is a rotated quadrilateral
    assert np.isnan(full[:, outside]).all()
    assert (~np.isnan(full[0][inside])).mean() > 0.97
    # DN 0 inside the raster is nodata too: the all-zero far-range columns map to NaN
    with rasterio.open(S1_DIR / "measurement" / "iw-vv.tiff") as src:
        assert (src.read(1)[:, -10:] == 0).all()
    line, pixel = scene.source_coords(Window(0, 0, g.width, g.height))
    far_range = (pixel > 1280 - 10) & (pixel < 1280) & (line > 0) & (line < 837)
    assert far_range.sum() > 100 and np.isnan(full[:, far_range]).all()


@pytest.mark.parametrize(("band", "index"), [("vv", 0), ("vh", 1)])
def test_db_matches_independent_warp(
    scene: GrdScene, full: np.ndarray, band: str, index: int
) -> None:
    ref = _reference_db(S1_DIR / "measurement" / f"iw-{band}.tiff", scene)
    mine = full[index]
    assert (np.isnan(ref) == np.isnan(mine)).mean() > 0.999
    both = ~np.isnan(ref) & ~np.isnan(mine)
    diff = np.abs(ref - mine)[both]
    assert np.median(diff) < 0.05  # dB
    assert np.percentile(diff, 99) < 0.5


def test_windows_equal_slices_of_full_read(scene: GrdScene, full: np.ndarray) -> None:
    g = scene.grid
    windows = list(iter_windows(g.height, g.width, WindowSpec(512, 64)))
    windows += [Window(3, 5, 97, 61), Window(g.width - 40, g.height - 30, 40, 30)]
    for win in windows:
        np.testing.assert_array_equal(scene.read(win), full[(slice(None), *win.toslices())])


def test_open_scene_uses_the_grd_reader_at_10m() -> None:
    with open_scene(S1_DIR) as s:
        assert isinstance(s, GrdScene) and s.grid.res == 10.0
        assert s.grid.crs.to_epsg() == 32643
        centre = Window(s.grid.width // 2, s.grid.height // 2, 64, 64)
        chip = s.read(centre)
    assert chip.shape == (2, 64, 64) and np.isfinite(chip).all()


def _copy_product(tmp_path: Path) -> Path:
    dst = tmp_path / S1_DIR.name
    (dst / "measurement").mkdir(parents=True)  # the shared data is read-only: copy the files only
    for f in ("productInfo.json", "measurement/iw-vv.tiff", "measurement/iw-vh.tiff"):
        shutil.copyfile(S1_DIR / f, dst / f)
    return dst


def _write_lut(folder: Path, pol: str, sigma: np.ndarray, pixels: np.ndarray) -> None:
    cal = folder / "annotation" / "calibration"
    cal.mkdir(parents=True, exist_ok=True)
    vectors = "".join(
        f"<calibrationVector><line>{line}</line><pixel>{' '.join(map(str, pixels))}</pixel>"
        f"<sigmaNought>{' '.join(f'{v:.6e}' for v in sigma)}</sigmaNought>"
        f"<betaNought>{' '.join(['2.370000e+02'] * len(pixels))}</betaNought></calibrationVector>"
        for line in (0, 8000, 16739)  # full-resolution line/pixel: the reader rescales them
    )
    (cal / f"calibration-iw-{pol}.xml").write_text(
        f"<calibration><calibrationVectorList>{vectors}</calibrationVectorList></calibration>"
    )


def test_calibration_lut_is_used_when_present(tmp_path: Path, full: np.ndarray) -> None:
    product = _copy_product(tmp_path)
    pixels = np.array([0, 12800, 25599])
    _write_lut(product, "vv", np.full(3, A_SIGMA), pixels)  # the assumed constant: same values
    _write_lut(product, "vh", np.array([A_SIGMA, A_SIGMA * 2, A_SIGMA * 4]), pixels)  # a ramp
    with open_grd(product, resolution=RES) as s:
        line, pixel = s.source_coords(Window(0, 0, s.grid.width, s.grid.height))
        calibrated = s.read()
    np.testing.assert_allclose(calibrated[0], full[0], atol=1e-4)
    # VH: A doubles from pixel 0 to the middle, so sigma0 drops by 20·log10(A_ratio) dB there
    ok = ~np.isnan(full[1])
    # LUT pixels 0..25599 of the full product land on 0..1279.95 of the decimated raster;
    # source pixel i has its centre at corner coordinate i + 0.5
    ratio = np.interp(pixel - 0.5, [0, 640, 1279.95], [1, 2, 4])
    expected_shift = -20 * np.log10(ratio)
    shift = (calibrated[1] - full[1])[ok]
    assert np.ptp(expected_shift[ok]) > 10  # the ramp spans ~12 dB across the swath
    np.testing.assert_allclose(shift, expected_shift[ok], atol=0.02)


def test_folder_without_measurement_rasters(tmp_path: Path) -> None:
    (tmp_path / "measurement").mkdir()
    with pytest.raises(ImageryError) as err:
        open_grd(tmp_path)
    assert err.value.reason is Reason.BAND_MISSING
    assert "measurement" in str(err.value) and "VV" in str(err.value)
    with pytest.raises(ImageryError) as err:
        open_scene(tmp_path)  # dispatched on measurement/
    assert err.value.reason is Reason.BAND_MISSING


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_bad_polarisation_and_raster_without_georeferencing(tmp_path: Path) -> None:
    with pytest.raises(ImageryError) as err:
        open_grd(S1_DIR, bands=["HH"])
    assert err.value.reason is Reason.BAND_MISMATCH  # not a band of the Sentinel-1 GRD sensor
    (tmp_path / "measurement").mkdir()
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "uint16"}
    for pol in ("vv", "vh"):
        with rasterio.open(tmp_path / "measurement" / f"iw-{pol}.tiff", "w", **profile) as dst:
            dst.write(np.ones((1, 8, 8), np.uint16))
    with pytest.raises(ImageryError) as err:
        open_grd(tmp_path)
    assert err.value.reason is Reason.CRS_MISSING
    (tmp_path / "measurement" / "iw-vv.tiff").write_bytes(b"II*\x00 truncated")
    with pytest.raises(ImageryError) as err:
        open_grd(tmp_path)
    assert err.value.reason is Reason.NOT_A_GEOTIFF
