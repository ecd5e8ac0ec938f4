"""The calibrated generator: TOA rendering, the Amazon palette, context chips, the realism measure.

The realism figures are measured on the real gallery's TRAIN split only (never val or test).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from asmspotter.cli import main
from imagery import gallery, stats
from imagery.errors import AsmSpotterError
from imagery.geometry import geometry_to_mask
from imagery.scene import open_scene
from imagery.synthetic import realism
from imagery.synthetic.atmosphere import Atmosphere, rayleigh_depth
from imagery.synthetic.chips import NEGATIVE_KINDS, SETTINGS, context_chips
from imagery.synthetic.layout import LANDCOVER
from imagery.synthetic.output import generate_dataset
from imagery.synthetic.scene import generate_scene
from imagery.synthetic.spectra import BANDS, calibration

VIS = slice(0, 3)


def _index(img: np.ndarray, a: str, b: str) -> np.ndarray:
    i, j = BANDS.index(a), BANDS.index(b)
    return (img[i] - img[j]) / (img[i] + img[j])


def test_legacy_generator_is_unchanged():
    """The default (legacy palette, l2a) draws exactly what it drew before issue 14."""
    s = generate_scene(11, 384, 384, clusters=3, cloud_probability=0, nodata_probability=0)
    assert len(s.instances) == 32 and int(s.labels.sum()) == 17281
    assert float(np.nansum(s.image.astype(np.float64))) == pytest.approx(96078.41227860982, 1e-9)
    s = generate_scene(20, 256, 256, clusters=2, cloud_probability=1.0)
    assert len(s.instances) == 26 and int(s.labels.sum()) == 30093
    assert float(np.nansum(s.image.astype(np.float64))) == pytest.approx(40793.19269982945, 1e-9)
    assert s.sensor == "sentinel2-l2a"


def test_atmosphere_physics():
    atm = Atmosphere(tau550=0.2)
    path, trans = atm.path(), atm.transmittance()
    assert np.all(np.diff(rayleigh_depth()) < 0)  # Rayleigh falls with wavelength
    assert np.all(np.diff(path) < 0) and path[0] > 2 * path[2]  # blue haze strongest
    assert np.all(np.diff(trans) > 0) and np.all((trans > 0) & (trans < 1))
    hazier = Atmosphere(tau550=0.6)
    assert np.all(hazier.path() > path) and np.all(hazier.transmittance() < trans)
    surface = np.random.default_rng(0).uniform(0.01, 0.4, (6, 5, 5)).astype(np.float32)
    toa = atm.to_toa(surface)
    np.testing.assert_allclose(atm.to_surface(toa), surface, atol=1e-6)
    dark = np.full((6, 1, 1), 0.02, np.float32)
    assert np.all(atm.to_toa(dark)[:, 0, 0] > 0.02)  # dark targets brighten at TOA
    # above a cloud only part of the Rayleigh scattering is left, and no aerosol
    assert np.all(atm.path(2.5) < path) and np.all(atm.transmittance(2.5) > trans)


@pytest.mark.parametrize("palette", ["legacy", "amazon"])
def test_l1c_is_the_same_scene_seen_through_the_atmosphere(palette):
    kw = dict(clusters=2, cloud_probability=0, nodata_probability=0, palette=palette)
    boa = generate_scene(5, 192, 192, level="l2a", **kw)
    toa = generate_scene(5, 192, 192, level="l1c", **kw)
    assert toa.sensor == "sentinel2-l1c" and boa.sensor == "sentinel2-l2a"
    assert np.array_equal(boa.labels, toa.labels) and np.array_equal(boa.landcover, toa.landcover)
    assert [i.id for i in boa.instances] == [i.id for i in toa.instances]
    dark = (boa.image[VIS] < 0.05).all(axis=0)
    assert dark.mean() > 0.3  # forest and water
    lift = toa.image[VIS][:, dark] - boa.image[VIS][:, dark]
    assert (lift > 0).mean(axis=1).min() > 0.97  # TOA > BOA for dark targets
    blue, green, red = np.median(lift, axis=1)
    assert blue > green > red > 0.01  # the blue cast of path reflectance
    forest = toa.landcover == LANDCOVER.index("forest")
    b, g, r = np.median(toa.image[VIS][:, forest], axis=1)
    assert b > g > r  # as the gallery's forest at TOA (0.094, 0.085, 0.065)


def test_amazon_scene_deterministic_with_exact_masks():
    a = generate_scene(7, 256, 256, clusters=4, level="l1c", palette="amazon")
    b = generate_scene(7, 256, 256, clusters=4, level="l1c", palette="amazon")
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.labels, b.labels)
    assert len(a.instances) >= 3
    g = a.grid
    for inst in a.instances:
        mask = a.instance_mask(inst)
        assert np.array_equal(mask, a.labels == inst.id)
        outline = a.instance_geometry(inst)
        assert np.array_equal(geometry_to_mask(outline, g.transform, (g.height, g.width)), mask)
    c = generate_scene(8, 256, 256, clusters=4, level="l1c", palette="amazon")
    assert a.image.tobytes() != c.image.tobytes()


def test_amazon_materials_stay_physical():
    """NIR/SWIR of the calibrated materials follow their material type."""
    cal = calibration()
    mats = cal["mine_materials"] + cal["scene_materials"]
    assert len(mats) >= 30
    roles = {m.get("role") for m in cal["mine_materials"]}
    assert roles == {"soil", "water", "vegetation"}
    for m in mats:
        blue, green, red, nir, swir1, swir2 = m["spectrum"]
        kind = m["material"]
        if kind.startswith(("pond", "river", "lake", "fishpond")):
            assert nir < green and swir1 < nir and swir2 < nir, m  # water
        elif kind in ("secondary", "pasture_wet"):
            assert nir > 3 * red, m  # green vegetation
        else:  # soils, sand, roads, roofs: bright and flat-to-rising in the infrared
            assert nir > 0.9 * red and swir1 > 0.5 * nir, m
    # the palette has what the real chips show: bright cream/white scars, turquoise/green ponds
    soils = np.array([m["spectrum"] for m in cal["mine_materials"] if m["role"] == "soil"])
    waters = np.array([m["spectrum"] for m in cal["mine_materials"] if m["role"] == "water"])
    assert soils[:, VIS].sum(axis=1).max() > 0.6
    assert (waters[:, 1] > waters[:, 2]).any()  # green over red: turquoise or green water
    assert "Earth Genome" in cal["attribution"] and cal["license"] == "CC BY 4.0"
    assert "TRAIN split" in cal["source"]


def test_amazon_sites_look_like_what_they_are():
    s = generate_scene(
        13, 384, 384, clusters=6, cloud_probability=0, nodata_probability=0, palette="amazon"
    )
    assert {i.category for i in s.instances} == {"pit", "pond"}
    ndwi, ndvi = _index(s.image, "B03", "B08"), _index(s.image, "B08", "B04")
    forest = s.landcover == LANDCOVER.index("forest")
    checked = 0
    for inst in s.instances:
        m = s.instance_mask(inst)
        core = m.copy()
        core[1:] &= m[:-1]
        core[:-1] &= m[1:]
        core[:, 1:] &= m[:, :-1]
        core[:, :-1] &= m[:, 1:]
        if core.sum() < 3:
            continue
        checked += 1
        if inst.category == "pond":
            assert np.median(ndwi[core]) > 0
        else:
            assert np.median(ndvi[core]) < 0.5 * np.median(ndvi[forest])
    assert checked >= 3 and np.median(ndvi[forest]) > 0.7


def test_context_chips():
    images, labels, kinds = context_chips(16, seed=3)
    assert images.shape == (16, 3, 48, 48) and images.dtype == np.float32
    assert labels.dtype == np.int8 and labels.sum() == 8
    assert np.isfinite(images).all() and images.min() > 0
    assert set(kinds[labels == 1]) == {"mine"}
    negatives = set(kinds[labels == 0])
    assert negatives <= set(NEGATIVE_KINDS) and negatives - {"forest"}  # look-alikes among them
    again = context_chips(16, seed=3)
    assert images.tobytes() == again[0].tobytes() and np.array_equal(kinds, again[2])
    assert images[:2].tobytes() != context_chips(2, seed=4)[0].tobytes()
    # TOA by default: the blue cast over every chip
    assert np.median(images[:, 0]) > np.median(images[:, 2])
    six, _, _ = context_chips(2, seed=3, bands=BANDS, level="l2a", palette="legacy")
    assert six.shape == (2, 6, 48, 48)
    with pytest.raises(AsmSpotterError):
        context_chips(4, bands=("B02", "B05"))
    with pytest.raises(AsmSpotterError):
        context_chips(0)


def test_realism_measures():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=300)
    labels = rng.random(300) < 0.4
    brute = np.mean(
        [[float(p > q) + 0.5 * (p == q) for q in scores[~labels]] for p in scores[labels]]
    )
    assert stats.roc_auc(scores, labels) == pytest.approx(brute)
    feats = rng.normal(size=(400, 6))
    assert realism.frechet_distance(feats, feats) == pytest.approx(0, abs=1e-6)
    assert realism.frechet_distance(feats, feats + 1.0) > 5
    same = realism.domain_auroc(feats[:200], feats[200:])
    apart = realism.domain_auroc(feats[:200], feats[200:] + 1.0)
    assert abs(same - 0.5) < 0.1 and apart > 0.9
    chips = rng.uniform(0.05, 0.2, (20, 3, 48, 48)).astype(np.float32)
    shift = realism.band_wasserstein(chips, chips + 0.03)
    np.testing.assert_allclose(shift, 0.03, atol=1e-3)
    rendered = realism.as_rendered(np.concatenate([chips, np.full_like(chips[:1], 0.5)]))
    assert rendered.max() == pytest.approx(0.3) and np.isfinite(rendered).all()
    feats = realism.chip_features(rendered)
    assert feats.shape == (21, len(realism.feature_names())) and np.isfinite(feats).all()


@pytest.fixture(scope="module")
def train_chips(shared_data):
    chips = gallery.load_gallery(shared_data / "amazon-mining-watch-gallery").split("train")
    assert set(chips.splits) == {"train"}
    return chips


def test_calibrated_generator_is_closer_to_real_chips(train_chips):
    """Fréchet distance and domain-classifier AUROC fall from legacy to the calibrated generator,
    for mine chips and for non-mine chips (small seeded sample)."""
    rng = np.random.default_rng(0)
    real = {}
    for label in (0, 1):
        idx = np.flatnonzero((train_chips.labels == label) & realism.usable(train_chips.images))
        real[label] = train_chips.images[rng.choice(idx, 300, replace=False)]
    figures = {}
    for name in ("legacy", "amazon-l1c"):
        images, labels, _ = context_chips(120, seed=1, **SETTINGS[name])
        for label in (0, 1):
            figures[name, label] = realism.compare(real[label], images[labels == label])
    for label in (0, 1):
        old, new = figures["legacy", label], figures["amazon-l1c", label]
        assert new.frechet < 0.5 * old.frechet, (label, old, new)
        assert new.auroc_logistic < old.auroc_logistic - 0.03, (label, old, new)
        assert max(new.wasserstein) < max(old.wasserstein), (label, old, new)


def test_dataset_with_level_and_bands(tmp_path):
    path = generate_dataset(
        tmp_path,
        2,
        scene_size=192,
        chip_size=96,
        seed=5,
        bands=("B02", "B03", "B04"),
        clusters=2,
        level="l1c",
        palette="amazon",
    )
    doc = json.loads(path.read_text())
    assert doc["info"]["level"] == "l1c" and doc["info"]["bands"] == ["B02", "B03", "B04"]
    api = COCO(str(path))
    scenes = {}
    for i in range(2):
        s = generate_scene(5 * 100_003 + i, 192, 192, clusters=2, level="l1c", palette="amazon")
        scenes[s.scene_id] = s
    checked = 0
    for img in doc["images"]:
        s = scenes[img["scene_id"]]
        with open_scene(tmp_path / img["file_name"]) as chip:
            assert chip.bands == ("B02", "B03", "B04") and chip.sensor.name == "sentinel2-l1c"
            data = chip.read()
        col0, row0 = ~s.grid.transform * (img["transform"][2], img["transform"][5])
        r, c = round(row0), round(col0)
        window = np.s_[r : r + img["height"], c : c + img["width"]]
        ref = s.image[:3][:, window[0], window[1]]
        np.testing.assert_allclose(data, ref, atol=0.51e-4, equal_nan=True)
        for ann in api.loadAnns(api.getAnnIds(imgIds=[img["id"]])):
            truth = s.labels[window] == ann["instance"]
            assert np.array_equal(api.annToMask(ann).astype(bool), truth)
            checked += 1
    assert checked > 0


def test_cli_chips_and_dataset_options(tmp_path, capsys):
    out = tmp_path / "chips.npz"
    assert main(["generate", "chips", "-o", str(out), "-n", "6", "--seed", "2", "-q"]) == 0
    with np.load(out) as npz:
        assert npz["images"].shape == (6, 3, 48, 48) and list(npz["bands"]) == ["B02", "B03", "B04"]
        assert npz["labels"].sum() == 3
        assert json.loads(str(npz["settings"]))["level"] == "l1c"
    capsys.readouterr()
    for bad, word in (
        (["dataset", "--bands", "B02,B99"], "B99"),
        (["scene", "--level", "l3"], "l3"),
    ):
        code = main(["generate", *bad, "-o", str(tmp_path / "x"), "-q"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error [INVALID_ARGUMENT]"), err
        assert "\n" not in err and word in err
