"""The window prefilter (service/prefilter.py): no window holding a true site is skipped, and
skipping windows does not change the sites the real default bundle finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagery.synthetic.output import write_scene
from imagery.synthetic.scene import generate_scene
from imagery.synthetic.spectra import BANDS
from imagery.windows import WindowSpec, iter_windows
from service.prefilter import WindowPrefilter

CHIP = 256
SPEC = WindowSpec(CHIP, CHIP // 4)  # the service's default windows
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "service" / "default_bundle"

# (seed, size, generate_scene options): clear, cloudy, nodata-edged, dense and empty scenes.
SCENES = [
    (0, 1024, {"cloud_probability": 0.0, "nodata_probability": 0.0}),
    (1, 1024, {"cloud_probability": 1.0, "nodata_probability": 1.0}),
    (2, 768, {"cloud_probability": 1.0, "nodata_probability": 0.0, "clusters": 3}),
    (5, 768, {"cloud_probability": 1.0, "nodata_probability": 1.0, "clusters": 2}),
    (6, 512, {"cloud_probability": 0.0, "nodata_probability": 0.0, "clusters": 1}),
    (9, 1024, {"cloud_probability": 0.0, "nodata_probability": 1.0}),
]


def _windows(scene):
    h, w = scene.labels.shape
    for win in iter_windows(h, w, SPEC):
        r, c = int(win.row_off), int(win.col_off)
        yield scene.image[:, r : r + CHIP, c : c + CHIP], scene.labels[r : r + CHIP, c : c + CHIP]


@pytest.mark.parametrize(("seed", "size", "options"), SCENES)
def test_every_window_holding_a_site_is_kept(seed: int, size: int, options: dict) -> None:
    scene = generate_scene(seed, size, size, **options)
    prefilter = WindowPrefilter(scene.bands)
    site_windows = 0
    need = prefilter.t.min_pixels
    for image, labels in _windows(scene):
        if not (labels > 0).any():
            continue
        site_windows += 1
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        assert prefilter.keep(image), f"seed {seed}: window with sites {ids.tolist()} skipped"
        # Stronger: each site's own pixels alone would keep the window (forest all around).
        candidates = prefilter.candidates(image)
        for site_id, count in zip(ids, counts, strict=True):
            own = int(np.count_nonzero(candidates & (labels == site_id)))
            assert own >= min(need, count), f"seed {seed}: site {site_id}: {own}/{count} px"
    assert site_windows > 0 or not scene.instances


def test_mostly_forest_scene_is_mostly_skipped() -> None:
    scene = generate_scene(3, 1024, 1024, clusters=0, cloud_probability=0.0, nodata_probability=0)
    prefilter = WindowPrefilter(scene.bands)
    kept = [prefilter.keep(image) for image, _ in _windows(scene)]
    assert sum(not k for k in kept) / len(kept) >= 0.5


def test_nodata_cloud_and_forest_windows_are_skipped_water_kept() -> None:
    prefilter = WindowPrefilter(BANDS)
    forest = np.array([0.02, 0.04, 0.025, 0.30, 0.14, 0.06], np.float32)
    cloud = np.array([0.55, 0.55, 0.56, 0.60, 0.45, 0.35], np.float32)
    water = np.array([0.04, 0.05, 0.04, 0.03, 0.01, 0.005], np.float32)
    image = np.repeat(forest[:, None, None], 32 * 32, axis=1).reshape(6, 32, 32)
    assert not prefilter.keep(image)
    assert not prefilter.keep(np.full_like(image, np.nan))
    assert not prefilter.keep(np.repeat(cloud[:, None, None], 32 * 32, axis=1).reshape(6, 32, 32))
    image[:, 10:12, 10:12] = water[:, None, None]  # a 2x2 px pond: just enough
    assert prefilter.keep(image)
    image[:, 10, 10] = forest
    assert not prefilter.keep(image)  # 3 px: below min_pixels
    assert WindowPrefilter.for_bands(("VV", "VH")) is None


def test_prefilter_keeps_the_plain_paths_sites(tmp_path: Path) -> None:
    """The real default bundle on a small generated scene: same sites with and without it."""
    if not (DEFAULT_BUNDLE / "bundle.json").exists():
        pytest.skip("no default bundle")
    from service.predictor import DetectOptions, Predictor
    from training.model import load_bundle

    files = write_scene(
        tmp_path, 11, 512, 512, clusters=1, cloud_probability=0.0, nodata_probability=0.0
    )
    model = load_bundle(DEFAULT_BUNDLE, device="cpu")
    options = DetectOptions(min_score=0.3)
    results = {}
    for prefilter in (False, True):
        predictor = Predictor(model, max_batch=4, prefilter=prefilter)
        try:
            results[prefilter] = predictor.detect_file(files.tile, options)
        finally:
            predictor.close()
    plain, fast = results[False], results[True]
    assert plain.windows_skipped == 0 and fast.windows_skipped > 0
    assert plain.sites, "the default bundle should find sites on this scene"

    def key(site):
        return (site.class_name, round(site.score, 4), site.geometry.wkb_hex)

    assert sorted(map(key, fast.sites)) == sorted(map(key, plain.sites))
