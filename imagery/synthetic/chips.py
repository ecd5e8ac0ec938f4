"""Context chips for a chip classifier: 48 x 48 px true-colour chips with chip labels.

``context_chips(n, seed)`` returns chips in the real gallery's layout (``imagery.gallery``):
float32 [N,3,48,48] reflectance in band order B02, B03, B04, labels int8 (1 = a mining site near
the centre, 0 = none) and what each chip shows (``kinds``): ``mine``, or for negatives the
look-alike it was centred on (river, sandbar, oxbow, lake, fishpond, clearing, road, village,
cloud) or ``forest`` (a random place). Negatives come from scenes without mining, so no site is
anywhere in them; positives are centred (with a jitter) on a site that is visible in the chip's
central half. Each chip is rendered as its own window of a seeded scene plan, so it is exactly the
pixels the whole scene would have there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason
from imagery.synthetic.layout import Plan, make_plan
from imagery.synthetic.render import cloud_alpha, render
from imagery.synthetic.scene import MIN_SITE_PX
from imagery.synthetic.spectra import band_indices

CHIP_PX = 48
CHIP_BANDS = ("B02", "B03", "B04")
SCENE_PX = 256  # each chip's scene; small scenes plan fast
CHIPS_PER_SCENE = 2
CENTRE_PX = 12  # a positive has a site within this many pixels of the centre (the central half)
JITTER_PX = 8  # how far a positive's centre may sit from its site
# What negatives are centred on, and how often (among the kinds a scene has): mostly the
# look-alikes that real hard-negative sets hold (riverbanks, fields, ponds, towns, clouds).
NEGATIVE_KINDS = {
    "forest": 0.5,
    "river": 1.5,
    "sandbar": 1.5,
    "oxbow": 0.7,
    "lake": 0.5,
    "fishpond": 0.7,
    "clearing": 2.0,
    "road": 0.7,
    "village": 0.7,
    "cloud": 1.0,
}
# Real mine chips are clear-sky composites; cloud remnants are a negative category.
POSITIVE_CLOUD_PROBABILITY = 0.1


def context_chips(
    n: int,
    seed: int = 0,
    positive_fraction: float = 0.5,
    bands: tuple[str, ...] = CHIP_BANDS,
    **options,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` chips: (images float32 [n,len(bands),48,48], labels int8 [n], kinds str [n]).

    ``options`` go to ``make_plan`` (e.g. ``level="l1c"``, ``palette="amazon"``; positives' scenes
    default to ``cloud_probability=POSITIVE_CLOUD_PROBABILITY``). Deterministic for a seed."""
    if n <= 0:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"n must be positive, got {n}")
    if not 0 <= positive_fraction <= 1:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"positive_fraction must be in [0, 1]: {positive_fraction}"
        )
    band_idx = band_indices(bands)
    images = np.empty((n, len(bands), CHIP_PX, CHIP_PX), np.float32)
    labels = np.zeros(n, np.int8)
    kinds = np.empty(n, object)
    n_pos = round(n * positive_fraction)
    order = np.random.default_rng([seed, 5]).permutation(n)  # positives spread over the output
    done = 0
    group = 0
    while done < n:
        take = min(CHIPS_PER_SCENE, n - done)
        rng = np.random.default_rng([seed, group, 1])
        scene_seed = int(rng.integers(2**31))
        positive = done < n_pos
        take = min(take, n_pos - done) if positive else take
        chips = _scene_chips(rng, scene_seed, take, positive, options)
        for img, kind in chips:
            i = order[done]
            images[i] = img[band_idx]
            labels[i] = int(positive)
            kinds[i] = kind
            done += 1
        group += 1
    return images, labels, kinds.astype(str)


def _scene_chips(
    rng: np.random.Generator, scene_seed: int, take: int, positive: bool, options: dict
) -> list[tuple[np.ndarray, str]]:
    """``take`` chips of one scene: around its sites (positive) or its look-alikes (negative)."""
    out: list[tuple[np.ndarray, str]] = []
    for attempt in range(20):
        clusters = int(rng.integers(1, 4)) if positive else 0
        opts = dict(options)
        if positive:
            opts.setdefault("cloud_probability", POSITIVE_CLOUD_PROBABILITY)
        plan = make_plan(scene_seed + attempt, SCENE_PX, SCENE_PX, clusters, **opts)
        for k in range(4 * take):
            if len(out) == take:
                return out
            if positive:
                chip = _positive(rng, plan, cluster=k % max(clusters, 1))
            else:
                chip = _negative(rng, plan)
            if chip is not None:
                out.append(chip)
        if len(out) == take:
            return out
    raise RuntimeError("could not place context chips")  # not reached for sane plans


def _window(rng: np.random.Generator, x: float, y: float, jitter: float) -> tuple[int, int]:
    """The chip's top-left (row, col) for a centre near (x, y), inside the scene."""
    cx = x + rng.uniform(-jitter, jitter)
    cy = y + rng.uniform(-jitter, jitter)
    col = int(np.clip(round(cx - CHIP_PX / 2), 0, SCENE_PX - CHIP_PX))
    row = int(np.clip(round(cy - CHIP_PX / 2), 0, SCENE_PX - CHIP_PX))
    return row, col


def _positive(rng: np.random.Generator, plan: Plan, cluster: int) -> tuple[np.ndarray, str] | None:
    """A chip centred near a site of ``cluster`` (any cluster if it has none)."""
    sites = [s for s in plan.sites if s.cluster == cluster] or plan.sites
    if not sites:
        return None
    site = sites[rng.integers(len(sites))]
    p = site.geom.representative_point()
    row, col = _window(rng, p.x, p.y, JITTER_PX)
    out = render(plan, row, col, CHIP_PX, CHIP_PX)
    lo, hi = CHIP_PX // 2 - CENTRE_PX, CHIP_PX // 2 + CENTRE_PX
    if (out.labels[lo:hi, lo:hi] > 0).sum() < MIN_SITE_PX or np.isnan(out.image).any():
        return None
    return out.image, "mine"


def _negative(rng: np.random.Generator, plan: Plan) -> tuple[np.ndarray, str] | None:
    kinds = [k for k in NEGATIVE_KINDS if _present(plan, k)]
    weights = np.array([NEGATIVE_KINDS[k] for k in kinds])
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    if kind == "forest":
        x, y = rng.uniform(0, SCENE_PX, 2)
    elif kind == "cloud":
        if plan.cloud is None:
            return None
        alpha = cloud_alpha(plan, 0, 0, SCENE_PX, SCENE_PX)[::4, ::4]
        rows, cols = np.nonzero(alpha > 0.2)
        if not len(rows):
            return None
        k = rng.integers(len(rows))
        x, y = 4 * cols[k] + 2, 4 * rows[k] + 2
    else:
        layer = plan.layers[kind]
        inside = [g for g in layer.geoms if g.intersects(_SCENE)]
        if not inside:
            return None
        geom = inside[rng.integers(len(inside))].intersection(_SCENE)
        p = _point_in(rng, geom)
        x, y = p.x, p.y
    row, col = _window(rng, x, y, 4)
    out = render(plan, row, col, CHIP_PX, CHIP_PX)
    if np.isnan(out.image).any():
        return None
    return out.image, kind


_SCENE = shapely.box(0, 0, SCENE_PX, SCENE_PX)


def _present(plan: Plan, kind: str) -> bool:
    if kind == "forest":
        return True
    if kind == "cloud":
        return plan.cloud is not None
    tree = plan.layers[kind].tree
    return tree is not None and len(tree.query(_SCENE)) > 0


def _point_in(rng: np.random.Generator, geom: BaseGeometry) -> Point:
    """A random point inside a polygon (rejection in its bounds; its representative point else)."""
    x0, y0, x1, y1 = geom.bounds
    for _ in range(20):
        p = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if geom.contains(p):
            return p
    return geom.representative_point()


def forest_texture_stats(
    noise: np.ndarray, patches: float, seed: int = 0, chips: int = 24
) -> tuple[np.ndarray, float]:
    """Median gradient energy per band B02-B04 and median standard deviation (mean of the bands)
    (``realism`` features) of generated all-forest chips (Amazon palette, l1c) with the visible
    bands' sensor noise scaled by ``noise`` [3] and 40 px texture amplitude ``patches``: what
    ``derive_calibration`` matches to the real forest."""
    from imagery.synthetic.layout import noise_scale
    from imagery.synthetic.realism import as_rendered, chip_features, feature_names

    names = feature_names()
    found = []
    for k in range(4 * chips):
        if len(found) == chips:
            break
        plan = make_plan(seed * 1000 + k, 128, 128, 0, 0.0, 0.0, level="l1c", palette="amazon")
        plan.forest_texture = (1.0, patches)
        scale = noise_scale()
        plan.noise_sigma[:3] = plan.noise_sigma[:3] / scale[:3] * np.asarray(noise)
        rng = np.random.default_rng([seed, k])
        row, col = (int(v) for v in rng.integers(0, 128 - CHIP_PX, 2))
        out = render(plan, row, col, CHIP_PX, CHIP_PX)
        if (out.landcover == 0).all():
            found.append(out.image[:3])
    feats = chip_features(as_rendered(np.asarray(found)))
    gradient = np.median(feats[:, [names.index(f"{b}_gradient") for b in CHIP_BANDS]], axis=0)
    std = np.median(feats[:, [names.index(f"{b}_std") for b in CHIP_BANDS]].mean(axis=1))
    return gradient, float(std)


# Named generator settings: the realism benchmark measures each, the data products take one.
SETTINGS: dict[str, dict] = {
    "legacy": {"level": "l2a", "palette": "legacy"},  # the generator before issue 14
    "legacy-l1c": {"level": "l1c", "palette": "legacy"},  # + top-of-atmosphere rendering
    "amazon-l2a": {"level": "l2a", "palette": "amazon"},  # + calibrated colours and textures
    "amazon-l1c": {"level": "l1c", "palette": "amazon"},  # both: the calibrated generator
}


def write_context_chips(
    path: str | Path, n: int, seed: int = 0, positive_fraction: float = 0.5, **options
) -> Path:
    """``context_chips`` saved as ``.npz``: images, labels, kinds, bands, and the settings."""
    images, labels, kinds = context_chips(n, seed, positive_fraction, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {"n": n, "seed": seed, "positive_fraction": positive_fraction, **options}
    np.savez_compressed(
        path,
        images=images,
        labels=labels,
        kinds=kinds,
        bands=np.asarray(CHIP_BANDS),
        settings=np.asarray(json.dumps(settings)),
    )
    return path
