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
from tests.real_parts import missing
from tests.service_support import BANDS as TILE_BANDS
from tests.service_support import WATER, WaterIndexModel, grid

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
        candidates = prefilter.grouped(image)
        for site_id, count in zip(ids, counts, strict=True):
            own = int(np.count_nonzero(candidates & (labels == site_id)))
            assert own >= min(need, count), f"seed {seed}: site {site_id}: {own}/{count} px"
    assert site_windows > 0 or not scene.instances


def test_cloudy_forest_windows_of_the_benchmark_tile_are_skipped() -> None:
    """Blocks of the full-tile benchmark's plan: forest under cloud fringes and cloud shadows
    (what made the first rules keep 97 % of that tile's windows) holds no candidate."""
    from imagery.synthetic.layout import make_plan
    from imagery.synthetic.render import render

    plan = make_plan(0, 10980, 10980, 5, cloud_probability=1.0, nodata_probability=1.0)
    prefilter = WindowPrefilter(BANDS)
    forest_windows = 0
    for row, col in ((2048, 2048), (5120, 5120), (4096, 1024)):
        out = render(plan, row, col, 512, 512)
        assert 0.2 < float((out.cloud > 0.5).mean()) < 0.8  # clouds and their fringes are here
        for r in (0, 256):
            for c in (0, 256):
                if (out.landcover[r : r + 256, c : c + 256] == 0).all():
                    forest_windows += 1
                    window = out.image[:, r : r + 256, c : c + 256]
                    assert not prefilter.keep(window), f"forest window {row + r},{col + c} kept"
    assert forest_windows >= 8


def test_nodata_cloud_and_forest_windows_are_skipped_water_kept() -> None:
    prefilter = WindowPrefilter(BANDS)
    forest = np.array([0.02, 0.04, 0.025, 0.30, 0.14, 0.06], np.float32)
    cloud = np.array([0.55, 0.55, 0.56, 0.60, 0.45, 0.35], np.float32)
    water = np.array([0.04, 0.05, 0.04, 0.03, 0.01, 0.005], np.float32)
    image = np.repeat(forest[:, None, None], 32 * 32, axis=1).reshape(6, 32, 32)
    assert not prefilter.keep(image)
    assert not prefilter.keep(np.full_like(image, np.nan))
    assert not prefilter.keep(np.repeat(cloud[:, None, None], 32 * 32, axis=1).reshape(6, 32, 32))
    # Thin cloud over forest and over its shadow: grey (red <= blue) or wet-looking with NDVI > 0.
    for fringe in (
        [0.195, 0.195, 0.183, 0.269, 0.171, 0.106],
        [0.116, 0.113, 0.097, 0.185, 0.108, 0.061],
        [0.04, 0.046, 0.027, 0.099, 0.043, 0.021],
    ):
        image[:, 4:12, 4:12] = np.array(fringe, np.float32)[:, None, None]
        assert not prefilter.keep(image), fringe
    image[:, 4:12, 4:12] = forest[:, None, None]
    soil = np.array([0.08, 0.11, 0.15, 0.22, 0.30, 0.25], np.float32)
    image[:, [3, 9, 15, 21], [5, 5, 5, 5]] = soil[:, None]  # four lone pixels: noise
    assert not prefilter.keep(image)
    image[:, 20:22, 20:22] = soil[:, None, None]  # a 2x2 px pit
    assert prefilter.keep(image)
    image = np.repeat(forest[:, None, None], 32 * 32, axis=1).reshape(6, 32, 32)
    image[:, 10:12, 10:12] = water[:, None, None]  # a 2x2 px pond: just enough
    assert prefilter.keep(image)
    image[:, 10, 10] = forest
    assert not prefilter.keep(image)  # 3 px: below min_pixels
    assert WindowPrefilter.for_bands(("VV", "VH")) is None


def test_prefilter_keeps_the_plain_paths_sites(tmp_path: Path) -> None:
    """The real default bundle on a small cloudy generated scene: same sites with and without
    skipping windows (both with the default site test)."""
    if not (DEFAULT_BUNDLE / "bundle.json").exists():
        missing("no default bundle")
    from service.predictor import DetectOptions, Predictor
    from training.model import load_bundle

    # A cloudy scene: most of its windows are skipped, and sites are found.
    files = write_scene(
        tmp_path, 12, 768, 768, clusters=1, cloud_probability=1.0, nodata_probability=0.0
    )
    model = load_bundle(DEFAULT_BUNDLE, device="cpu")
    # the default bundle's verifier scores synthetic sites low: ask for the weak ones too
    options = DetectOptions(min_score=0.001)
    results = {}
    for prefilter in (False, True):
        predictor = Predictor(model, max_batch=4, prefilter=prefilter)
        try:
            results[prefilter] = predictor.detect_file(files.tile, options)
        finally:
            predictor.close()
    plain, fast = results[False], results[True]
    assert plain.windows_skipped == 0 and fast.windows_skipped >= 8
    assert plain.windows_run == fast.windows_run + fast.windows_skipped  # every valid window
    assert plain.sites, "the default bundle should find sites on this scene"

    def key(site):
        return (site.class_name, round(site.score, 4), site.geometry.wkb_hex)

    assert sorted(map(key, fast.sites)) == sorted(map(key, plain.sites))


class _AlarmModel(WaterIndexModel):
    """Flags open water and bright cloud alike: a model with false alarms on clouds."""

    def predict(self, images: np.ndarray, score_threshold: float = 0.05) -> list:
        from training.engines.base import Instances

        out = []
        for water, img in zip(super().predict(images, score_threshold), images, strict=True):
            cloud = np.nan_to_num(img[0]) > 0.3
            masks = np.concatenate([water.masks, cloud[None]]) if cloud.any() else water.masks
            k = len(masks)
            out.append(
                Instances(
                    masks=masks,
                    scores=np.full(k, 0.9, np.float32),
                    classes=np.ones(k, np.int64),
                    boxes=np.zeros((k, 4), np.float32),
                )
            )
        return out


def test_site_test_drops_cloud_alarms_and_skipping_changes_nothing(tmp_path: Path) -> None:
    from imagery.tiles import write_tile
    from service.predictor import DetectOptions, Predictor

    forest = np.array([0.02, 0.04, 0.025, 0.30, 0.14, 0.06], np.float32)
    cloud = np.array([0.45, 0.44, 0.44, 0.48, 0.33, 0.21], np.float32)
    image = np.repeat(forest[:, None, None], 192 * 192, axis=1).reshape(6, 192, 192)
    image[:, 20:40, 20:40] = WATER[:, None, None]  # a pond in the first window
    image[:, 130:170, 120:170] = cloud[:, None, None]  # a cloud alone in the last windows
    tile = tmp_path / "cloudy.tif"
    write_tile(tile, image, grid(192), TILE_BANDS, scene_id="cloudy", cog=False)
    found = {}
    for name, prefilter, site_test in (
        ("raw", False, False),
        ("plain", False, True),
        ("optimised", True, True),
    ):
        predictor = Predictor(
            _AlarmModel(chip_size=64), overlap=16, prefilter=prefilter, site_test=site_test
        )
        try:
            result = predictor.detect_file(tile, DetectOptions(output_crs="EPSG:32630"))
        finally:
            predictor.close()
        found[name] = sorted(round(s.geometry.area) for s in result.sites)
    assert found["raw"] == [40_000, 200_000]  # the pond (20x20 px) and the cloud (40x50 px)
    assert found["plain"] == found["optimised"] == [40_000]
