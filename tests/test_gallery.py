"""The real Amazon Mining Watch gallery: chip counts, labels, the fixed split, the importer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imagery import gallery
from imagery.scene import open_scene


@pytest.fixture(scope="module")
def chips(shared_data):
    return gallery.load_gallery(shared_data / "amazon-mining-watch-gallery")


def test_counts_match_the_gallery_readme(chips):
    assert chips.images.shape == (12643, 3, 48, 48)
    assert (chips.labels == 1).sum() == 2633
    assert (chips.labels == 0).sum() == 9634
    assert (chips.labels == -1).sum() == 376


def test_split_is_by_group_and_fixed(chips):
    for group in np.unique(chips.groups):
        assert len(set(chips.splits[chips.groups == group])) == 1, group
    test = chips.split("test")
    # every negative category the gallery has is in the test split, with positives
    cats = set(test.categories)
    hard = {"riverbank", "aquaculture", "landslide", "industrial", "cloud_remnant", "forest"}
    assert hard <= cats
    assert (test.labels == 1).sum() == 511 and (test.labels == 0).sum() == 3892
    assert not set(test.groups) & set(chips.split("train").groups)
    assert not set(chips.split("val").groups) & set(chips.split("train").groups)


def test_reflectance_and_nodata(chips):
    finite = chips.images[np.isfinite(chips.images)]
    assert finite.min() > 0 and finite.max() <= gallery.TOA_SATURATION + 1e-6
    # uint8 levels come back exactly: value / 255 * 0.3
    levels = np.round(finite[:1000] / gallery.TOA_SATURATION * 255)
    np.testing.assert_allclose(levels / 255 * gallery.TOA_SATURATION, finite[:1000], atol=1e-7)
    # ... and render back to the mosaics' bytes: nodata black, other pixels never all black
    some = chips.images[np.isnan(chips.images).any(axis=(1, 2, 3))][:20]
    rendered = gallery.to_rendered(some)
    assert rendered.dtype == np.uint8 and rendered.shape == (len(some), 48, 48, 3)
    assert ((rendered == 0).all(axis=-1) == np.isnan(some).all(axis=1)).all()
    assert np.array_equal(gallery.to_reflectance(rendered), some, equal_nan=True)
    # real forest is darker in red than in blue at the top of the atmosphere (haze)
    forest = chips.images[chips.categories == "forest"]
    blue, _, red = np.nanmedian(forest, axis=(0, 2, 3))
    assert red < blue
    # the 32 px set is centred on a nodata canvas
    small = chips.images[np.char.startswith(chips.mosaics, "GeoCompass2023-negatives")]
    assert len(small) == 1000 and np.isnan(small[:, :, :8]).all()


def test_rgb_order_is_b02_b03_b04():
    rgb = np.zeros((1, 48, 48, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # R, G, B as rendered
    refl = gallery.to_reflectance(rgb)
    np.testing.assert_allclose(refl[0, :, 0, 0], np.array([50, 100, 200]) / 255 * 0.3, rtol=1e-6)


def test_import_writes_the_dataset_format(shared_data, tmp_path):
    counts = gallery.import_gallery(
        tmp_path, shared_data / "amazon-mining-watch-gallery", ("val",), progress=False
    )
    assert counts == {"val": 786}
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data["images"]) == 786 and data["annotations"] == []
    first = data["images"][0]
    assert first["georeferenced"] is False and first["split"] == "val"
    assert {img["label"] for img in data["images"]} == {0, 1}
    with open_scene(tmp_path / first["file_name"]) as scene:
        assert scene.bands == gallery.GALLERY_BANDS
        assert scene.sensor.name == "sentinel2-l1c"
        values = scene.read()
    ref = gallery.load_gallery(shared_data / "amazon-mining-watch-gallery").split("val")
    np.testing.assert_allclose(values, ref.images[0], atol=1e-4, equal_nan=True)
