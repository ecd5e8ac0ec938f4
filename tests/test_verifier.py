"""The context verifier: training on chip labels, its metrics, fusion, and rescoring in a bundle."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine

from imagery import stats
from imagery.scene import ArrayScene, Grid
from tests.real_parts import require_module

require_module("torch")

from training import verifier as v  # noqa: E402


def _blob_chips(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hazy forest chips; half carry a bright tan scar (a 'mine')."""
    rng = np.random.default_rng(seed)
    forest = np.array([0.09, 0.085, 0.065], np.float32)[:, None, None]
    images = forest + rng.normal(0, 0.004, (n, 3, 48, 48)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.float32)
    yy, xx = np.mgrid[:48, :48]
    for i in np.flatnonzero(labels):
        cy, cx = rng.uniform(12, 36, 2)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(9, 36)
        images[i][:, m] = np.array([0.14, 0.16, 0.19], np.float32)[:, None]
    return images, labels


def test_roc_auc_and_sensitivity_match_their_definitions():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 300).astype(float)  # many ties
    labels = rng.random(300) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert stats.roc_auc(scores, labels) == pytest.approx(pairs)
    s = np.r_[np.linspace(0, 1, 100), [0.5, 0.99, 2.0]]
    y = np.r_[np.zeros(100, bool), [True, True, True]]
    # at specificity 0.98 the threshold is the 98th negative (0.9798): 0.99 and 2.0 pass
    assert stats.sensitivity_at_specificity(s, y, 0.98) == pytest.approx(2 / 3)


def test_training_learns_chip_labels_and_export_loads_into_a_bundle(tiny_bundle, tmp_path):
    images, labels = _blob_chips(256, seed=1)
    val = _blob_chips(64, seed=2)
    cfg = v.VerifierConfig(widths=[8, 16, 16, 32], epochs=4, batch_size=32, seed=0, lr=5e-3)
    model, history = v.train_verifier(images, labels, cfg, val=val, log=None)
    assert len(history) == 4 and history[-1]["val_auroc"] > 0.95
    p = v.score_chips(model, val[0], cfg)
    assert p[val[1] == 1].mean() > p[val[1] == 0].mean() + 0.3

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    fusion = v.Fusion(detector=0.5, verifier=2.0, bias=-0.25)
    v.export_verifier(bundle, model, cfg, fusion, default_threshold=0.6)

    from training.bundle import load_bundle, read_info

    info = read_info(bundle)
    assert info["default_threshold"] == 0.6 and info["verifier"]["bands"] == list(v.BANDS)
    loaded = load_bundle(bundle, device="cpu")
    scorer = loaded.site_scorer
    assert isinstance(scorer, v.SiteVerifier)
    # fp16 export: the same probabilities to 1e-2
    np.testing.assert_allclose(scorer.probabilities(val[0][:8]), p[:8], atol=1e-2)

    # the bundle's detector floor: its network reports down to min_detector_score
    from service.predictor import Predictor
    from training.engines.base import SCORE_FLOOR

    assert load_bundle(tiny_bundle, device="cpu").model.roi_heads.score_thresh == SCORE_FLOOR
    v.export_verifier(bundle, model, cfg, fusion, 0.6, min_detector_score=0.005)
    low = load_bundle(bundle, device="cpu")
    assert Predictor(low).detector_floor == low.model.roi_heads.score_thresh == 0.005
    # a corrupted verifier file is refused by its sha256
    (bundle / v.VERIFIER_WEIGHTS).write_bytes(b"0" * 64)
    from imagery.errors import AsmSpotterError

    with pytest.raises(AsmSpotterError, match="sha256"):
        load_bundle(bundle, device="cpu")


def _dihedral_views(img):
    import torch

    return [torch.rot90(t, k, dims=(1, 2)) for t in (img, img.flip(2)) for k in range(4)]


def test_device_augmentation_keeps_geometry_and_the_cpu_statistics():
    """``_augment_on_device`` (a GPU's augmentations) turns, flips and shifts each chip as a
    whole and draws its radiometry from the same distributions as the CPU's ``_augment``."""
    import torch

    gen = torch.Generator().manual_seed(0)
    still = v.VerifierConfig(haze=0, gain=0, gamma=0, noise=0, blur=0, shift_px=0)
    chips = 0.01 + 0.2 * torch.rand(64, 3, 8, 8)  # above the gamma step's floor (1e-4)
    turned = v._augment_on_device(chips, still, gen)
    for img, out in zip(chips, turned, strict=True):
        assert any(torch.allclose(out, view) for view in _dihedral_views(img))
    # the 8 views all occur
    seen = {
        next(k for k, view in enumerate(_dihedral_views(img)) if torch.allclose(out, view))
        for img, out in zip(chips, turned, strict=True)
    }
    assert seen == set(range(8))
    # a shift is a window of the reflect-padded chip, up to shift_px each way
    shifted = v._augment_on_device(chips, dataclasses.replace(still, shift_px=2), gen)
    padded = torch.nn.functional.pad(chips, (2, 2, 2, 2), mode="reflect")
    for img, out in zip(padded, shifted, strict=True):
        windows = [img[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        views = [w for window in windows for w in _dihedral_views(window)]
        assert any(torch.allclose(out, w) for w in views)
    # radiometry: the same mean and spread as the CPU's augmentations, nodata stays nodata
    images, _ = _blob_chips(3000, seed=5)
    images[:, :, :2] = np.nan
    cfg = v.VerifierConfig(blur=0.0)
    cpu = v._augment(images, cfg, np.random.default_rng(0))
    dev = v._augment_on_device(torch.from_numpy(images), cfg, gen).numpy()
    # shifts move the nodata rows in and out alike
    assert np.isnan(dev).mean() == pytest.approx(np.isnan(cpu).mean(), rel=0.1)
    assert np.nanmean(dev) == pytest.approx(np.nanmean(cpu), rel=0.01)
    assert np.nanstd(dev) == pytest.approx(np.nanstd(cpu), rel=0.05)
    assert np.nanstd(dev) > 1.5 * np.nanstd(images)  # it did augment


def test_chips_are_clipped_normalised_and_nodata_becomes_the_band_mean():
    """``prepare_chips`` (numpy in) and ``normalise_chips`` (a tensor on any device) alike."""
    import torch

    images = np.full((2, 3, 4, 4), 0.1, np.float32)
    images[0, :, 0, 0] = np.nan
    images[1, 2, 3, 3] = 0.5  # brighter than the gallery's saturation
    cfg = v.VerifierConfig()
    a = v.prepare_chips(images, cfg.mean, cfg.std)
    b = v.normalise_chips(torch.from_numpy(images), cfg.mean, cfg.std)
    assert torch.equal(a, b) and a.is_contiguous(memory_format=torch.channels_last)
    assert (a[0, :, 0, 0] == 0).all()  # nodata -> the band mean
    assert float(a[1, 2, 3, 3]) == pytest.approx((v.CLIP - cfg.mean[2]) / cfg.std[2])
    assert float(a[1, 0, 1, 1]) == pytest.approx((0.1 - cfg.mean[0]) / cfg.std[0])


def test_training_on_a_cuda_device_learns_chip_labels():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    images, labels = _blob_chips(256, seed=1)
    val = _blob_chips(64, seed=2)
    cfg = v.VerifierConfig(widths=[8, 16, 16, 32], epochs=4, batch_size=32, seed=0, lr=5e-3)
    model, history = v.train_verifier(images, labels, cfg, val=val, log=None, device="cuda")
    assert history[-1]["val_auroc"] > 0.95
    assert next(model.parameters()).device.type == "cpu"


def test_fusion_fit_separates_and_calibrates():
    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.3
    p_ver = np.clip(np.where(y, rng.beta(5, 2, y.size), rng.beta(2, 5, y.size)), 1e-3, 1 - 1e-3)
    p_det = rng.uniform(0.05, 1, y.size)  # uninformative
    fusion = v.fit_fusion(p_det, p_ver, y)
    assert fusion.verifier > 0.5 and abs(fusion.detector) < 0.3
    fused = fusion(p_det, p_ver)
    assert abs(fused.mean() - y.mean()) < 0.01  # calibrated in the large


class _Candidate:
    def __init__(self, x: float, y: float) -> None:
        from shapely.geometry import Point

        self.pixels = Point(x, y).buffer(1.5)


def test_context_chips_are_centred_and_kept_inside_the_scene():
    data = np.arange(3 * 100 * 120, dtype=np.float32).reshape(3, 100, 120)
    grid = Grid(CRS.from_epsg(32720), Affine(10, 0, 0, 0, -10, 0), 120, 100)
    scene = ArrayScene(data, ("B02", "B03", "B04"), grid)
    sv = v.SiteVerifier(v.build(v.VerifierConfig()), v.VerifierConfig(), v.Fusion())
    chips = sv.context(scene, [(60.0, 50.0), (2.0, 3.0), (119.0, 99.0)])
    assert chips.shape == (3, 3, 48, 48)
    np.testing.assert_array_equal(chips[0], data[:, 26:74, 36:84])  # centred
    np.testing.assert_array_equal(chips[1], data[:, :48, :48])  # shifted inside at the corner
    np.testing.assert_array_equal(chips[2], data[:, 52:, 72:])
    small = ArrayScene(
        data[:, :30, :40], ("B02", "B03", "B04"), Grid(grid.crs, grid.transform, 40, 30)
    )
    chip = sv.context(small, [(20.0, 15.0)])[0]
    assert np.isnan(chip[:, :9]).all() and np.isnan(chip[:, :, :4]).all()  # centred, padded
    np.testing.assert_array_equal(chip[:, 9:39, 4:44], data[:, :30, :40])


def test_the_one_view_screen_drops_only_sites_that_cannot_reach_min_score():
    """The shipped verifier on real gallery val chips laid out as one scene: with a min_score,
    the sites kept are a superset of those whose full 8-view score reaches it, their scores are
    the full ones, and the screen does drop sites (it saves work); min_score 0 keeps all."""
    from shapely.geometry import Point

    from imagery.gallery import load_gallery
    from service.sites import Candidate
    from training.bundle import PACKAGED_BUNDLE, read_info

    val = load_gallery().split("val").sample(64, seed=5)
    side = 8  # an 8 x 8 mosaic of 48 px chips
    scene_px = side * v.CONTEXT_PX
    data = np.full((3, scene_px, scene_px), np.nan, np.float32)
    for k, image in enumerate(val.images):
        r, c = divmod(k, side)
        data[:, r * 48 : (r + 1) * 48, c * 48 : (c + 1) * 48] = image
    grid = Grid(CRS.from_epsg(32720), Affine(10, 0, 0, 0, -10, 0), scene_px, scene_px)
    scene = ArrayScene(data, v.BANDS, grid)
    sv = v.SiteVerifier.from_bundle(PACKAGED_BUNDLE, read_info(PACKAGED_BUNDLE), "cpu")
    rng = np.random.default_rng(0)
    found = []
    for k in range(len(val)):
        r, c = divmod(k, side)
        pixels = Point(c * 48 + 24, r * 48 + 24).buffer(3)
        found.append(Candidate(pixels, pixels, float(rng.uniform(0.01, 0.9)), 0, 1))
    full = sv(scene, found, 0.0)
    assert len(full) == len(found)
    # the upper quartile of the fused scores (2.4.0's median, 0.013, is below every screen's reach)
    threshold = float(np.quantile([c.score for c in full], 0.75))
    screened = sv(scene, found, threshold)
    by_place = {(c.pixels.centroid.x, c.pixels.centroid.y): c.score for c in screened}
    passing = [c for c in full if c.score >= threshold]
    assert passing and len(screened) < len(full)  # the screen dropped some sites
    for c in passing:
        assert by_place[(c.pixels.centroid.x, c.pixels.centroid.y)] == pytest.approx(c.score)


def test_the_recipe_reads_detector_and_verifier_scores_of_real_chips_apart():
    """The recipe's calibration input: per real chip, the best site's detector score (through
    the service's Predictor with an identity scorer) and the verifier's probability."""
    from benchmarks.train_default_bundle import detector_and_verifier_scores
    from imagery.gallery import load_gallery
    from training.bundle import PACKAGED_BUNDLE, read_info

    chips = load_gallery().split("val").sample(6, seed=1)
    p_det, p_ver = detector_and_verifier_scores(PACKAGED_BUNDLE, chips)
    assert p_det.shape == p_ver.shape == (6,)
    floor = read_info(PACKAGED_BUNDLE)["verifier"]["min_detector_score"]
    assert ((p_det == 0) | (p_det >= floor)).all() and (p_det < 1).all() and p_det.max() > 0
    sv = v.SiteVerifier.from_bundle(PACKAGED_BUNDLE, read_info(PACKAGED_BUNDLE), "cpu")
    np.testing.assert_allclose(p_ver, sv.probabilities(chips.images), rtol=1e-6)
