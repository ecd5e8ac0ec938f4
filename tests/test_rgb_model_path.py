"""A true-colour model's path: small inputs are not blown up to the chip size, 6-band tiles still
get the water/bare-soil test through the bands read besides the model's, RGB-only inputs run every
window with no site test."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine

from imagery.scene import ArrayScene, Grid
from service.prefilter import REQUIRED_BANDS
from service.tiles import ModelInput
from training.engines.base import input_size, prepare_input

RGB_INFO = {
    "sensor": "sentinel2-l1c",
    "sensors": ["sentinel2-l1c", "sentinel2-l2a"],
    "bands": ["B02", "B03", "B04"],
    "chip_size": 256,
    "normalization": {"mean": [0.1, 0.1, 0.1], "std": [0.05, 0.05, 0.05]},
}


def test_small_inputs_are_padded_to_a_multiple_of_32_not_to_the_chip_size():
    assert input_size(48, 48, 256) == 64
    assert input_size(32, 20, 256) == 32
    assert input_size(200, 48, 256) == 224
    assert input_size(256, 256, 256) == 256
    assert input_size(40, 300, 256) == 256  # as large as a window in one direction: the chip
    chips = np.full((2, 3, 48, 48), 0.1, np.float32)
    chips[0, :, :4, :4] = np.nan
    x = prepare_input(chips, RGB_INFO)
    assert x.shape == (2, 3, 64, 64)
    assert np.all(x[:, :, 48:, :] == 0) and np.all(x[0, :, :4, :4] == 0)  # padding, nodata: mean


def test_rgb_model_reads_the_prefilter_bands_a_tile_has():
    model_input = ModelInput.from_info(RGB_INFO)
    assert set(model_input.extra_bands) == set(REQUIRED_BANDS) - set(RGB_INFO["bands"])
    six = ("B02", "B03", "B04", "B08", "B11", "B12")
    assert model_input.reads(six)[:3] == ("B02", "B03", "B04")
    assert set(model_input.reads(six)) >= set(REQUIRED_BANDS)
    assert model_input.reads(("B02", "B03", "B04")) == ("B02", "B03", "B04")


def _scene(bands: list[str], size: int = 48) -> ArrayScene:
    data = np.full((len(bands), size, size), 0.08, np.float32)
    grid = Grid(CRS.from_epsg(32720), Affine(10, 0, 500000, 0, -10, 9000000), size, size)
    return ArrayScene(data, bands, grid, "sentinel2-l1c", scene_id="s")


def test_the_spectral_test_runs_with_the_bands_it_needs_and_is_off_without_them(tiny_bundle):
    from service.predictor import Predictor
    from training.model import load_bundle

    predictor = Predictor(load_bundle(tiny_bundle, device="cpu"))
    try:
        assert predictor.spectral_test(_scene(["B02", "B03", "B04"])) is None
        assert predictor.spectral_test(_scene(["B02", "B03", "B04", "B08", "B11"])) is not None
        # an RGB chip given in six bands (NIR and SWIR wholly nodata): those bands are absent
        rgb_in_six = _scene(SIX)
        rgb_in_six._data[3:] = np.nan
        rgb_in_six = ArrayScene(rgb_in_six._data, SIX, rgb_in_six.grid, "sentinel2-l1c")
        assert rgb_in_six.absent_bands == ("B08", "B11", "B12")
        assert predictor.spectral_test(rgb_in_six) is None
    finally:
        predictor.close()
    empty = _scene(SIX)
    empty = ArrayScene(np.full_like(empty._data, np.nan), SIX, empty.grid)
    assert empty.absent_bands == ()  # all nodata: no band is told apart


SIX = ["B02", "B03", "B04", "B08", "B11", "B12"]


def test_a_file_without_the_optional_bands_reads_them_as_nodata(tmp_path):
    from imagery.errors import AsmSpotterError, Reason
    from imagery.scene import open_scene
    from imagery.tiles import write_tile

    rgb = np.random.default_rng(0).uniform(0.02, 0.2, (3, 32, 32)).astype(np.float32)
    grid = _scene(SIX, 32).grid
    path = tmp_path / "rgb.tif"
    write_tile(path, rgb, grid, ("B02", "B03", "B04"), cog=False)
    with open_scene(path, bands=SIX, optional_bands=("B08", "B11", "B12")) as scene:
        assert scene.bands == tuple(SIX) and scene.absent_bands == ("B08", "B11", "B12")
        values = scene.read()
    np.testing.assert_allclose(values[:3], rgb, atol=1e-4)  # stored as uint16 DN
    assert np.isnan(values[3:]).all()
    with open_scene(path, bands=["B04", "B08"], optional_bands=("B08",)) as scene:
        np.testing.assert_allclose(scene.read()[0], rgb[2], atol=1e-4)
    with pytest.raises(AsmSpotterError) as err:  # B11 and B12 are not optional here
        open_scene(path, bands=SIX, optional_bands=("B08",))
    assert err.value.reason is Reason.BAND_MISSING and "['B11', 'B12']" in str(err.value)
