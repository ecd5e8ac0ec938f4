"""Rasterise any window of a scene plan: reflectance [6,h,w], instance labels and land cover.

Noise is a function of global pixel coordinates (``noise.py``) and the blur reads a 1-pixel margin,
so adjacent windows join seamlessly; only the sensor noise is drawn per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio import features
from rasterio.transform import Affine
from shapely.geometry import box

from imagery.synthetic.atmosphere import CLOUD_TOP_KM, Atmosphere
from imagery.synthetic.layout import LANDCOVER, Plan
from imagery.synthetic.noise import fractal_noise, pixel_noise

WATER_LAYERS = {"river", "lake", "oxbow", "fishpond", "pond"}
CLOUD_LABEL_ALPHA = 0.5  # sites under cloud thicker than this lose those pixels from their labels
SWIR = slice(4, 6)  # B11, B12 in BANDS
MARGIN = 4  # pixels read around a window: one per blur pass
HAZE_DRIFT = 0.3  # relative change of the path reflectance across the regional noise field


@dataclass
class Rendered:
    image: np.ndarray  # float32 [6, h, w] reflectance, NaN = nodata
    labels: np.ndarray  # int32 [h, w]: site id (0 = none), clouds and nodata removed
    landcover: np.ndarray  # uint8 [h, w]: index into LANDCOVER as painted (before clouds)
    cloud: np.ndarray  # float32 [h, w] cloud opacity 0..1


def _rasterize(
    plan_layer_geoms: list,
    values: list[int],
    shape: tuple[int, int],
    transform: Affine,
    all_touched: bool = False,
) -> np.ndarray:
    if not values:
        return np.zeros(shape, np.int32)
    return features.rasterize(
        zip(plan_layer_geoms, values, strict=True),
        out_shape=shape,
        transform=transform,
        fill=0,
        all_touched=all_touched,
        dtype="int32",
    )


def site_labels(plan: Plan, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """Site ids as painted (later sites win), without cloud/nodata removal."""
    if plan.site_tree is None:
        return np.zeros((h, w), np.int32)
    idx = np.sort(plan.site_tree.query(box(col0 - 1, row0 - 1, col0 + w + 1, row0 + h + 1)))
    transform = Affine(1, 0, col0, 0, 1, row0)
    return _rasterize(
        [plan.sites[i].geom for i in idx], [plan.sites[i].id for i in idx], (h, w), transform
    )


def cloud_alpha(plan: Plan, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    c = plan.cloud
    if c is None:
        return np.zeros((h, w), np.float32)
    n = fractal_noise(c["seed"], row0, col0, h, w, c["cell"], 6)
    # Cloud fields cluster: a much larger-scale field raises and lowers the local cover.
    n += 0.35 * (fractal_noise(c["seed"] + 1, row0, col0, h, w, c["cell"] * 10, 3) - 0.5)
    t = np.clip((n - c["threshold"]) / c["softness"], 0, 1)
    return (t * t * (3 - 2 * t) * np.float32(c["opacity"])).astype(np.float32)


def nodata_mask(plan: Plan, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """Outside the swath, plus cloud and shadow where the tile was stacked with a cloud mask."""
    out = np.zeros((h, w), bool)
    if plan.nodata is not None:
        nx, ny, c = plan.nodata
        rows = np.arange(row0, row0 + h, dtype=np.float64)[:, None] + 0.5
        cols = np.arange(col0, col0 + w, dtype=np.float64)[None, :] + 0.5
        out |= nx * cols + ny * rows > c
    if plan.cloud is not None and plan.cloud["masked"]:
        dx, dy = plan.cloud["shadow"]
        out |= cloud_alpha(plan, row0, col0, h, w) > CLOUD_LABEL_ALPHA
        out |= cloud_alpha(plan, row0 - int(dy), col0 - int(dx), h, w) > CLOUD_LABEL_ALPHA
    return out


def labels(plan: Plan, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """The truth: painted site ids minus pixels hidden by thick cloud or nodata."""
    lab = site_labels(plan, row0, col0, h, w)
    if lab.any():
        lab[cloud_alpha(plan, row0, col0, h, w) > CLOUD_LABEL_ALPHA] = 0
        lab[nodata_mask(plan, row0, col0, h, w)] = 0
    return lab


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def _blur(img: np.ndarray, weight: float) -> np.ndarray:
    """Separable 3-tap blur [w, 1-2w, w] with edge replication: the sensor's point spread."""
    c = np.float32(1 - 2 * weight)
    wgt = np.float32(weight)
    p = np.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
    img = c * p[:, 1:-1] + wgt * (p[:, :-2] + p[:, 2:])
    p = np.pad(img, ((0, 0), (0, 0), (1, 1)), mode="edge")
    return c * p[:, :, 1:-1] + wgt * (p[:, :, :-2] + p[:, :, 2:])


def _to_toa(img: np.ndarray, atm: Atmosphere, regional: np.ndarray) -> np.ndarray:
    """Surface -> top-of-atmosphere reflectance; the aerosol load drifts at a large scale."""
    path = atm.path()[:, None, None] * (1 + HAZE_DRIFT * (regional - 0.5))[None]
    return (path + atm.transmittance()[:, None, None] * img).astype(np.float32)


def render(plan: Plan, row0: int, col0: int, h: int, w: int) -> Rendered:
    """Render one window of the plan (any window; adjacent windows match)."""
    # Work on the window plus a margin (inside the scene) for the three blur passes.
    r0, c0 = max(row0 - MARGIN, 0), max(col0 - MARGIN, 0)
    r1, c1 = min(row0 + h + MARGIN, plan.height), min(col0 + w + MARGIN, plan.width)
    H, W = r1 - r0, c1 - c0
    seed = plan.seed
    coarse = fractal_noise(seed * 5 + 1, r0, c0, H, W, 40, 4)
    fine = fractal_noise(seed * 5 + 2, r0, c0, H, W, 5, 2)
    grain = pixel_noise(seed * 5 + 3, r0, c0, H, W)
    regional = fractal_noise(seed * 5 + 4, r0, c0, H, W, 300, 3)

    # Terrain shading: the slope of a fractal elevation field towards the sun (land only).
    shade_t = np.ones((H, W), np.float32)
    if plan.relief > 0:
        tseed, cell = seed * 5 + 6, plan.topo_cell
        z = fractal_noise(tseed, r0, c0, H, W, cell, 5)
        dzdx = fractal_noise(tseed, r0, c0 + 1, H, W, cell, 5) - z
        dzdy = fractal_noise(tseed, r0 + 1, c0, H, W, cell, 5) - z
        slope_sun = (dzdx * plan.sun[0] + dzdy * plan.sun[1]) * np.float32(cell)
        shade_t = np.clip(1 + np.float32(plan.relief * 0.35) * slope_sun, 0.55, 1.45)

    # Forest background: crowns and gaps below the pixel size, regrowth patches at a large scale.
    texture = 0.45 * (0.55 - fine) + 0.35 * (grain - 0.5)
    if plan.forest_texture is None:
        gaps = np.clip(texture + 0.12, 0, 0.6)[None]
    else:  # calibrated: crowns and gaps (sunlit crowns brighter than the mean) and patches
        crowns, patches = plan.forest_texture
        texture = np.float32(crowns) * texture + np.float32(patches) * (coarse - 0.5)
        gaps = np.clip(texture + 0.12, -1.5, 1.5)[None]
    canopy, shadow = plan.forest[0][:, None, None], plan.forest[1][:, None, None]
    img = _lerp(canopy, shadow, gaps)
    regrowth = np.clip((regional - plan.regrowth_threshold) * 4, 0, 0.8)
    regrowth *= np.clip(coarse * 1.6 - 0.3, 0, 1)
    regrowth = regrowth[None]
    img = (_lerp(img, plan.secondary[:, None, None], regrowth) * shade_t[None]).astype(np.float32)
    landcover = np.zeros((H, W), np.uint8)

    transform = Affine(1, 0, c0, 0, 1, r0)
    window_box = box(c0 - 1, r0 - 1, c1 + 1, r1 + 1)
    for name in LANDCOVER[1:]:
        layer = plan.layers[name]
        idx = layer.query(window_box)
        if len(idx) == 0:
            continue
        obj = _rasterize(
            [layer.geoms[i] for i in idx], list(idx + 1), (H, W), transform, layer.all_touched
        )
        m = obj > 0
        if not m.any():
            continue
        k = obj[m] - 1
        t = (fine[m] if layer.fine_mix else coarse[m]) * layer._mix[k]
        a, b = layer._a[k], layer._b[k]
        tex = 1 + layer.texture * 2 * (0.6 * (fine[m] - 0.5) + 0.4 * (grain[m] - 0.5))
        if layer.texture > 0.25:  # strong (calibrated) textures: never below a tenth
            tex = np.maximum(tex, 0.1)
        if name not in WATER_LAYERS:
            tex = tex * shade_t[m]
        img[:, m] = ((a + (b - a) * t[:, None]) * tex[:, None]).T
        landcover[m] = layer.code

    img *= np.float32(plan.gain)
    atm = plan.atmosphere
    if plan.cloud is not None:
        c = plan.cloud
        dx, dy = c["shadow"]
        shade_alpha = cloud_alpha(plan, r0 - int(dy), c0 - int(dx), H, W)[None]
        img *= 1 - shade_alpha * (1 - c["shadow_keep"][:, None, None])
        if atm is not None:
            img = _to_toa(img, atm, regional)
        alpha = cloud_alpha(plan, r0, c0, H, W)
        puff = (0.85 + 0.3 * fine)[None] * c["spectrum"][:, None, None]
        if atm is not None:  # only the air above the cloud top scatters and dims
            top = atm.path(CLOUD_TOP_KM)[:, None, None], atm.transmittance(CLOUD_TOP_KM)
            puff = top[0] + top[1][:, None, None] * puff
        img = _lerp(img, puff, alpha[None])
    else:
        alpha = np.zeros((H, W), np.float32)
        if atm is not None:
            img = _to_toa(img, atm, regional)
    img += plan.haze[:, None, None] * (0.3 + 0.7 * regional)[None]
    img = _blur(img, plan.psf)
    if plan.composite_blur > 0:  # a median composite of several dates is softer than one scene
        img = _blur(img, plan.composite_blur)
    # B11 and B12 are 20 m bands resampled to the 10 m grid: two more [1 2 1]/4 passes.
    img[SWIR] = _blur(_blur(img[SWIR], 0.25), 0.25)

    # Crop the margin, add sensor noise, cut the swath edge.
    sl = (slice(row0 - r0, row0 - r0 + h), slice(col0 - c0, col0 - c0 + w))
    img = img[:, sl[0], sl[1]]
    rng = np.random.default_rng([seed, row0, col0])
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * plan.noise_sigma[:, None, None]
    img = np.clip(img, 1e-4, 1.0).astype(np.float32)
    nodata = nodata_mask(plan, row0, col0, h, w)
    img[:, nodata] = np.nan
    return Rendered(
        image=img,
        labels=labels(plan, row0, col0, h, w),
        landcover=landcover[sl],
        cloud=alpha[sl],
    )
