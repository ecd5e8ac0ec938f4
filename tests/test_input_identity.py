"""Inputs the model would misread are refused or adapted, never read silently.

Band identity: a tile whose bands carry no descriptions (or descriptions naming no band) is
refused with BAND_ORDER_UNKNOWN unless the caller names the order; S2 names and STAC common names
are accepted; an RGB-only tile serves an RGB model; a wider tile is subset by name.
Ground sampling distance: a tile far coarser than the model's 10 m is refused (GSD_MISMATCH), a
finer one or one in EPSG:4326 is resampled onto a 10 m grid and the response says so.
Each case runs locally (``Predictor``) and through a real gRPC server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import Point, box

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import iou
from imagery.gsd import pixel_size_m, plan_model_grid
from service.client import DetectionClient, DetectionError
from service.predictor import DetectOptions, Predictor
from service.server import DetectionServer, ServerConfig
from service.tiles import LOCAL_FILE_LIMITS, ModelInput, open_tile
from tests.service_support import BANDS, UTM, WaterIndexModel, make_tile

PONDS = [box(30, 8, 90, 40), Point(56, 100).buffer(10), Point(130, 130).buffer(8)]
PERMUTED = ("B12", "B11", "B08", "B04", "B03", "B02")  # another order than the model's


def _write(
    path: Path,
    values: np.ndarray,
    descriptions: tuple[str, ...] | None,
    crs: CRS = UTM,
    transform=None,
) -> Path:
    """Float reflectance as uint16 DN (nodata 0), with or without band descriptions."""
    dn = np.clip(np.rint(np.nan_to_num(values, nan=0.0) * 10000), 0, 65535).astype(np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=dn.shape[2],
        height=dn.shape[1],
        count=dn.shape[0],
        dtype="uint16",
        crs=crs,
        transform=transform or from_origin(600_000, 700_000, 10, 10),
        nodata=0,
    ) as dst:
        dst.write(dn)
        if descriptions:
            dst.descriptions = descriptions
    return path


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32) / 10000


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """The same 160 px scene of soil with three ponds, written in several ways."""
    root = tmp_path_factory.mktemp("identity")
    good, truth = make_tile(root / "good.tif", 160, PONDS)
    values = _read(good)
    order = [BANDS.index(b) for b in PERMUTED]
    out = {"good": good, "truth": truth, "root": root}
    out["undescribed"] = _write(root / "undescribed.tif", values[order], None)
    out["permuted"] = _write(root / "permuted.tif", values[order], PERMUTED)
    out["layers"] = _write(root / "layers.tif", values, tuple(f"Layer_{i}" for i in range(6)))
    common = ("swir22", "swir16", "nir", "red", "green", "blue")
    out["common"] = _write(root / "common.tif", values[order], common)
    out["rgb"] = _write(root / "rgb.tif", values[[2, 1, 0]], ("red", "green", "blue"))
    # 100 m: the decimated real sample's pixel size
    coarse = values[:, ::10, ::10]
    out["100m"] = _write(
        root / "100m.tif", coarse, BANDS, transform=from_origin(6e5, 7e5, 100, 100)
    )
    # 5 m: each 10 m pixel as 2 x 2
    fine = np.repeat(np.repeat(values, 2, axis=1), 2, axis=2)
    out["5m"] = _write(root / "5m.tif", fine, BANDS, transform=from_origin(6e5, 7e5, 5, 5))
    # an EPSG:4326 copy of the 10 m tile (what gdalwarp -t_srs EPSG:4326 writes)
    out["4326"] = _geographic_copy(good, root / "4326.tif")
    return out


def _geographic_copy(src_path: Path, dst_path: Path) -> Path:
    with rasterio.open(src_path) as src:
        dst_crs = CRS.from_epsg(4326)
        transform, w, h = calculate_default_transform(
            src.crs, dst_crs, src.width, src.height, *src.bounds
        )
        profile = src.profile | {"crs": dst_crs, "transform": transform, "width": w, "height": h}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            for i in range(1, src.count + 1):
                reproject(
                    rasterio.band(src, i),
                    rasterio.band(dst, i),
                    dst_transform=transform,
                    dst_crs=dst_crs,
                    resampling=Resampling.nearest,
                )
            dst.descriptions = src.descriptions
    return dst_path


@pytest.fixture(scope="module")
def predictor():
    p = Predictor(WaterIndexModel(chip_size=64), overlap=16)
    yield p
    p.close()


@pytest.fixture(scope="module")
def client(tiles):
    config = ServerConfig(address="127.0.0.1:0", allowed_root=str(tiles["root"]), overlap=16)
    server = DetectionServer(config, model=WaterIndexModel(chip_size=64))
    server.start()
    server.load()
    with DetectionClient(f"127.0.0.1:{server.port}", timeout_s=60) as c:
        yield c
    server.stop(grace=1)


def _matches(sites, truth, geom=lambda s: s.geometry, min_iou=0.8) -> bool:
    return len(sites) == len(truth) and all(
        max(iou(geom(s), t) for t in truth) >= min_iou for s in sites
    )


UTM_OUT = DetectOptions(output_crs="EPSG:32630")


# -- band identity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["undescribed", "layers"])
def test_unidentified_bands_are_refused_locally(tiles, predictor, name):
    # Before: the undescribed file was read as B02..B12 and the ponds vanished ("0 sites").
    with pytest.raises(AsmSpotterError) as err:
        predictor.detect_file(tiles[name], UTM_OUT)
    assert err.value.reason is Reason.BAND_ORDER_UNKNOWN
    assert "--band-order" in str(err.value) and str(tiles[name]) in str(err.value)


@pytest.mark.parametrize("name", ["undescribed", "layers"])
def test_unidentified_bands_are_refused_by_the_server(tiles, client, name):
    with pytest.raises(DetectionError) as err:
        client.detect_tile(tiles[name])
    assert err.value.reason == "BAND_ORDER_UNKNOWN" and err.value.code == "INVALID_ARGUMENT"


def test_the_caller_can_state_the_band_order(tiles, predictor, client):
    local = predictor.detect_file(tiles["undescribed"], UTM_OUT, band_names=list(PERMUTED))
    assert _matches(local.sites, tiles["truth"])
    remote = client.detect_tile(tiles["undescribed"], band_names=PERMUTED, output_crs="EPSG:32630")
    from shapely.geometry import shape

    assert _matches(remote.sites, tiles["truth"], geom=lambda s: shape(s.geometry))


@pytest.mark.parametrize("name", ["permuted", "common"])
def test_described_bands_are_subset_by_name(tiles, predictor, name):
    result = predictor.detect_file(tiles[name], UTM_OUT)
    assert _matches(result.sites, tiles["truth"])


def test_a_wrong_stated_order_that_names_no_band_is_refused(tiles, predictor):
    with pytest.raises(AsmSpotterError) as err:
        predictor.detect_file(tiles["undescribed"], band_names=["B02", "B03", "x", "B08", "a", "b"])
    assert err.value.reason is Reason.BAND_MISMATCH


def test_rgb_tile_serves_an_rgb_model(tiles):
    model = ModelInput("sentinel2-l2a", ("B02", "B03", "B04"))
    with open_tile(tiles["rgb"], model, LOCAL_FILE_LIMITS) as scene:
        assert scene.bands == ("B02", "B03", "B04")
        got = scene.read()
    expected = _read(tiles["good"])[:3]
    assert np.allclose(got, expected, atol=1e-4)
    six = ModelInput("sentinel2-l2a", BANDS)
    with pytest.raises(AsmSpotterError) as err:
        open_tile(tiles["rgb"], six, LOCAL_FILE_LIMITS)
    assert err.value.reason is Reason.BAND_MISMATCH and "B08" in str(err.value)


class NirOptionalModel(WaterIndexModel):
    """Six bands of which NIR and SWIR are optional: NDWI where the input has NIR, a red-band
    rule where it does not (the ponds' red is half the soil's). Keeps what it was given."""

    def __init__(self) -> None:
        super().__init__(chip_size=64)
        self.info["optional_bands"] = ["B08", "B11", "B12"]
        self.seen_nir: list[bool] = []

    def predict(self, images: np.ndarray, score_threshold: float = 0.05) -> list:
        nir = images[:, 3]
        self.seen_nir.append(bool(np.isfinite(nir).any()))
        if np.isfinite(nir).any():
            return super().predict(images, score_threshold)
        visible = images.copy()  # red < 0.11 -> the NDWI rule's water
        visible[:, 1] = 1.0
        visible[:, 3] = np.where(images[:, 2] < 0.11, 0.0, 1.0)
        return super().predict(visible, score_threshold)


def test_rgb_tile_serves_a_model_whose_other_bands_are_optional(tiles):
    model = NirOptionalModel()
    optional = ModelInput.from_info(model.info)
    assert optional.optional_bands == ("B08", "B11", "B12")
    with open_tile(tiles["rgb"], optional, LOCAL_FILE_LIMITS) as scene:
        assert scene.bands == BANDS and scene.absent_bands == ("B08", "B11", "B12")
        got = scene.read()
    assert np.allclose(got[:3], _read(tiles["good"])[:3], atol=1e-4)
    assert np.isnan(got[3:]).all()  # nodata: the model fills it by the band mean
    with open_tile(tiles["good"], optional, LOCAL_FILE_LIMITS) as scene:
        assert scene.absent_bands == () and np.isfinite(scene.read()).all()
    # only B08 optional: the RGB tile still lacks B11 and B12
    nir_only = ModelInput("sentinel2-l2a", BANDS, optional_bands=("B08",))
    with pytest.raises(AsmSpotterError) as err:
        open_tile(tiles["rgb"], nir_only, LOCAL_FILE_LIMITS)
    assert err.value.reason is Reason.BAND_MISMATCH and "'B11', 'B12'" in str(err.value)


def test_optional_bands_through_the_predictor_and_the_server(tiles):
    model = NirOptionalModel()
    predictor = Predictor(model, overlap=16)
    try:
        rgb = predictor.detect_file(tiles["rgb"], UTM_OUT)
        assert model.seen_nir and not any(model.seen_nir)
        model.seen_nir.clear()
        six = predictor.detect_file(tiles["good"], UTM_OUT)
        assert model.seen_nir and all(model.seen_nir)
    finally:
        predictor.close()
    assert _matches(rgb.sites, tiles["truth"]) and _matches(six.sites, tiles["truth"])
    # without NIR/SWIR the water/bare-soil prefilter cannot run: every window runs, none skipped
    assert rgb.windows_skipped == 0 and rgb.windows_run == six.windows_run + six.windows_skipped
    config = ServerConfig(address="127.0.0.1:0", allowed_root=str(tiles["root"]), overlap=16)
    server = DetectionServer(config, model=NirOptionalModel())
    server.start()
    server.load()
    try:
        with DetectionClient(f"127.0.0.1:{server.port}", timeout_s=60) as c:
            remote = c.detect_tile(tiles["rgb"], output_crs="EPSG:32630")
    finally:
        server.stop(grace=1)
    from shapely.geometry import shape

    assert _matches(remote.sites, tiles["truth"], geom=lambda s: shape(s.geometry))


# -- ground sampling distance ----------------------------------------------------------------------
def test_coarse_tile_is_refused_locally_and_by_the_server(tiles, predictor, client):
    # Before: the 100 m tile was run as if 10 m and produced "sites".
    with pytest.raises(AsmSpotterError) as err:
        predictor.detect_file(tiles["100m"])
    assert err.value.reason is Reason.GSD_MISMATCH
    assert "100.0 x 100.0 m" in str(err.value) and "10 m" in str(err.value)
    with pytest.raises(DetectionError) as remote:
        client.detect_tile(tiles["100m"])
    assert remote.value.reason == "GSD_MISMATCH"


def test_model_grid_tile_is_read_as_it_is(tiles, predictor):
    result = predictor.detect_file(tiles["good"], UTM_OUT)
    assert result.grid_check is not None and not result.grid_check.resampled
    assert result.grid_check.tile_gsd_m == pytest.approx(10.0) and result.grid_check.notice == ""


@pytest.mark.parametrize("name, gsd", [("5m", 5.0), ("4326", 10.0)])
def test_other_grids_are_resampled_and_say_so(tiles, predictor, client, name, gsd):
    result = predictor.detect_file(tiles[name], UTM_OUT)
    check = result.grid_check
    assert check.resampled and check.model_gsd_m == 10.0
    assert check.tile_gsd_m == pytest.approx(gsd, rel=0.15)
    assert check.crs == "EPSG:32630" and "resampled" in check.notice
    assert (result.width, result.height) == pytest.approx((160, 160), abs=2)
    assert _matches(result.sites, tiles["truth"], min_iou=0.7)
    remote = client.detect_tile(tiles[name])
    assert remote.grid_check is not None and remote.grid_check.resampled
    assert remote.grid_check.notice == check.notice
    assert len(remote.sites) == len(tiles["truth"])


def test_geographic_pixel_size_is_measured_in_metres():
    # 1/10800 degree at the equator is about 10.3 m east-west and 10.2 m north-south
    dx, dy = pixel_size_m(
        CRS.from_epsg(4326), from_origin(10, 0.05, 1 / 10800, 1 / 10800), 100, 100
    )
    assert dx == pytest.approx(10.31, abs=0.05) and dy == pytest.approx(10.24, abs=0.05)
    plan = plan_model_grid(
        CRS.from_epsg(32630), from_origin(0, 0, 10.5, 10.5), 100, 100, 10.0, "t.tif"
    )
    assert not plan.check.resampled  # within the 10 % tolerance
    plan = plan_model_grid(CRS.from_epsg(32630), from_origin(0, 0, 20, 20), 100, 100, 10.0, "t")
    assert plan.check.resampled and plan.width == 200  # up to 2x coarser: resampled
    with pytest.raises(AsmSpotterError):
        plan_model_grid(CRS.from_epsg(32630), from_origin(0, 0, 21, 21), 100, 100, 10.0, "t")


# -- the same through the command line -------------------------------------------------------------
def test_cli_refuses_names_and_reports(tiles, tiny_bundle, tmp_path, capsys):
    from asmspotter.cli import main

    out = tmp_path / "sites.geojson"
    local = ["detect", "--local", "--bundle", str(tiny_bundle), "-o", str(out)]
    assert main([*local, str(tiles["undescribed"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error [BAND_ORDER_UNKNOWN]: ")
    assert main([*local, str(tiles["undescribed"]), "--band-order", ",".join(PERMUTED)]) == 0
    assert main([*local, str(tiles["100m"])]) == 2
    assert capsys.readouterr().err.startswith("error [GSD_MISMATCH]: ")
    assert main([*local, str(tiles["5m"])]) == 0
    captured = capsys.readouterr()
    assert f"note: {tiles['5m']}: resampled from 5.0 x 5.0 m pixels" in captured.err
    assert "GeoJSON: " in captured.out
