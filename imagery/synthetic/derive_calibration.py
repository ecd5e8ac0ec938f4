"""Fit the generator's Amazon calibration to the real gallery's TRAIN chips (run once).

    .venv/bin/python -m imagery.synthetic.derive_calibration [--gallery DIR]

Writes ``imagery/synthetic/amazon.json`` (package data; the generator never reads the gallery).
Only the gallery's train split is used (``imagery.gallery``: never its val or test split), chips
with at least 90 % valid pixels. Steps, all seeded:

1. Atmosphere: every chip's forest reference (the per-band median of its darker half) is fitted
   with the TOA model of ``atmosphere.py`` over the cited forest spectrum (``spectra.py``):
   aerosol optical depth tau_550 and a forest brightness gain by least squares on a grid. Chips
   whose gain is forest-like (0.6-1.6) give the scene atmospheres the generator draws from
   (tau_550 and gain pairs) and the forest's residual colour tilt; the others borrow the median
   tau_550 of their mosaic.
2. Materials: pixels far from the forest (TOA distance > ``NON_FOREST``) are brought to surface
   reflectance with their chip's atmosphere and clustered (k-means in log-brightness and
   chromaticity): mine chips give the mining materials (scars, tailings, ponds), non-mine chips
   the look-alikes' (rivers, sand, fields, roofs). Each cluster takes the material type of the
   nearest cited endmember (log-reflectance of B02 B03 B04), and its NIR/SWIR are that
   endmember's, scaled by the cluster's visible brightness: the 6-band spectrum stays physically
   plausible (water keeps NIR below green, SWIR dark).
3. Texture: the generator's sensor-noise scale per band (the real chips are median composites)
   and the amplitude of its 40 px forest texture are chosen so that generated all-forest chips
   have the real all-forest chips' median gradient energy per band (mean absolute neighbour
   difference) and standard deviation.
4. Extent: the mining clusters' size is scaled so that generated mine chips have the real mine
   chips' median share of non-forest pixels (``realism.other_share``).
5. Blur: the weight of one more 3-tap blur (a median composite of several dates is softer than
   one scene) makes generated chips' Laplacian-to-gradient ratio the real chips'.
6. Land-cover texture: one multiplier of the painted land covers' texture amplitudes (at most
   8) makes generated mine chips as rough (median gradient energy) as the real ones.

Data: Amazon Mining Watch training gallery, Earth Genome (CC BY 4.0), contains modified
Copernicus Sentinel data.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imagery.synthetic.atmosphere import Atmosphere
from imagery.synthetic.spectra import ASSETS, BANDS, ENDMEMBERS

OUT = ASSETS / "amazon.json"
VIS = slice(0, 3)
VIS_NAMES = ("B02", "B03", "B04")
TAU_GRID = np.round(np.arange(0.0, 1.501, 0.01), 3)
GAIN_GRID = np.round(np.arange(0.30, 3.001, 0.01), 3)
FOREST_LIKE = (0.6, 1.6)
NON_FOREST = 0.04  # TOA distance (reflectance) from a chip's forest beyond which it is "other"
K = 24
ROUNDS = 2  # of the generator-in-the-loop fits
DARKEST = 0.02  # clusters with a B02+B03+B04 surface reflectance below this are left out
PAIRS = 256
MINE_CANDIDATES = (
    "tailings",
    "sand",
    "laterite",
    "wet_soil",
    "pasture_dry",
    "pond_turbid",
    "pond_moderate",
    "pond_green",
    "pond_turquoise",
    "pond_deep",
    "secondary",
    "pasture_wet",
)
SCENE_CANDIDATES = (
    "river_white",
    "river_black",
    "lake_clear",
    "sand",
    "wet_soil",
    "laterite",
    "road",
    "roof",
    "pasture_wet",
    "pasture_dry",
    "secondary",
    "fishpond",
)
ROLES = {  # what a mining material is used for in the generator
    "tailings": "soil",
    "sand": "soil",
    "laterite": "soil",
    "wet_soil": "soil",
    "pasture_dry": "soil",
    "pond_turbid": "water",
    "pond_moderate": "water",
    "pond_green": "water",
    "pond_turquoise": "water",
    "pond_deep": "water",
    "secondary": "vegetation",
    "pasture_wet": "vegetation",
}


def _forest_reference(flat: np.ndarray) -> np.ndarray:
    """[N,3]: per-band median of each chip's darker half (by brightness), valid pixels only."""
    bright = flat.mean(axis=1)
    out = np.zeros((len(flat), 3))
    for i in range(len(flat)):
        ok = np.isfinite(bright[i])
        dark = ok & (bright[i] <= np.median(bright[i][ok]))
        out[i] = np.median(flat[i][:, dark], axis=1)
    return out


def fit_atmosphere(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per chip: tau_550 and forest gain minimising the squared TOA error of the forest reference;
    and the residual [N,3]."""
    forest = np.asarray(ENDMEMBERS["forest"], np.float64)[VIS]
    atm = [Atmosphere(tau550=float(t)) for t in TAU_GRID]
    path = np.array([a.path()[VIS] for a in atm], np.float64)
    trans = np.array([a.transmittance()[VIS] for a in atm], np.float64)
    model = path[:, None] + trans[:, None] * GAIN_GRID[None, :, None] * forest  # [T,G,3]
    flat_model = model.reshape(-1, 3)
    best = np.empty(len(reference), np.int64)
    for s in range(0, len(reference), 256):
        err = ((reference[s : s + 256, None] - flat_model[None]) ** 2).sum(-1)
        best[s : s + 256] = err.argmin(axis=1)
    ti, gi = np.unravel_index(best, model.shape[:2])
    return TAU_GRID[ti], GAIN_GRID[gi], reference - model[ti, gi]


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 60) -> np.ndarray:
    """Cluster assignment of each row (k-means++ start, Lloyd iterations; seeded)."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(k - 1):
        d = np.min(((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.asarray(centres)
    assign = np.zeros(len(x), np.int64)
    for _ in range(iters):
        assign = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return assign


def _colour_space(boa: np.ndarray) -> np.ndarray:
    total = boa.sum(axis=1, keepdims=True)
    return np.hstack([np.log(total), 6 * boa / total])


def materials(
    boa: np.ndarray, candidates: tuple[str, ...], seed: int, n: int = 60_000
) -> list[dict]:
    """Clusters of surface-reflectance pixels [P,3] as typed 6-band materials with weights."""
    rng = np.random.default_rng(seed)
    sample = np.clip(boa[rng.choice(len(boa), min(n, len(boa)), replace=False)], 0.003, None)
    assign = kmeans(_colour_space(sample), K, seed)
    ends = np.log(np.array([ENDMEMBERS[c][VIS] for c in candidates]))
    out = []
    for j in range(K):
        members = sample[assign == j]
        if len(members) == 0:
            continue
        vis = np.median(members, axis=0)
        if vis.sum() < DARKEST:  # darker than the atmosphere model allows: not a material
            continue
        kind = candidates[int(np.argmin(((ends - np.log(vis)) ** 2).sum(axis=1)))]
        end = np.asarray(ENDMEMBERS[kind])
        scale = float(np.mean(vis / end[VIS]))
        spectrum = np.concatenate([vis, end[3:] * scale])
        out.append(
            {
                "material": kind,
                "weight": round(len(members) / len(sample), 4),
                "spectrum": np.round(spectrum, 4).tolist(),
            }
        )
    return sorted(out, key=lambda m: sum(m["spectrum"][:3]))


def _other_pixels(
    flat: np.ndarray, tau: np.ndarray, gain: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per chip, the surface reflectance [P,3] of its non-forest pixels; and each chip's share."""
    forest = np.asarray(ENDMEMBERS["forest"], np.float64)[VIS] * gain
    out, share = [], np.zeros(len(flat))
    for i in range(len(flat)):
        atm = Atmosphere(tau550=float(tau[i]))
        p, t = atm.path()[VIS, None], atm.transmittance()[VIS, None]
        ref = p[:, 0] + t[:, 0] * forest
        dist = np.sqrt(((flat[i] - ref[:, None]) ** 2).sum(axis=0))
        ok = np.isfinite(dist)
        far = ok & (dist > NON_FOREST)
        share[i] = far.sum() / max(ok.sum(), 1)
        out.append(((flat[i][:, far] - p) / t).T)
    return out, share


def fit_texture(
    target: np.ndarray, std: float, patches: float, seed: int = 0
) -> tuple[list[float], float]:
    """Per-band sensor-noise scale of B02-B04 and the 40 px texture amplitude whose generated
    all-forest chips match the real ones' gradient energy per band and standard deviation:
    alternating bisections (each statistic grows with its parameter), starting from ``patches``."""
    from imagery.synthetic.chips import forest_texture_stats

    target = np.asarray(target, np.float64)
    noise = np.ones(3)
    for _ in range(2):
        lo, hi = np.full(3, 0.02), np.full(3, 2.0)
        for _ in range(7):  # the three bands at once: each band's gradient follows its noise
            noise = np.sqrt(lo * hi)
            low = forest_texture_stats(noise, patches, seed)[0] < target
            lo, hi = np.where(low, noise, lo), np.where(low, hi, noise)
        noise = np.sqrt(lo * hi)
        lo_p, hi_p = 0.0, 12.0
        for _ in range(7):
            patches = 0.5 * (lo_p + hi_p)
            if forest_texture_stats(noise, patches, seed)[1] < std:
                lo_p = patches
            else:
                hi_p = patches
        patches = 0.5 * (lo_p + hi_p)
    return np.round(noise, 3).tolist(), round(patches, 3)


def _feature(images: np.ndarray, name: str) -> np.ndarray:
    from imagery.synthetic.realism import as_rendered, chip_features, feature_names

    names = feature_names()
    feats = chip_features(as_rendered(images))
    if name == "gradient":
        return feats[:, [names.index(f"{b}_gradient") for b in VIS_NAMES]].mean(axis=1)
    return feats[:, names.index(name)]


def gradient(images: np.ndarray) -> float:
    """Median gradient energy (mean absolute neighbour difference, mean of B02-B04)."""
    return float(np.median(_feature(images, "gradient")))


def roughness(images: np.ndarray) -> float:
    """Median ratio of the Laplacian to the gradient energy: high for pixel noise, low for
    smooth (blurred) texture."""
    ratio = _feature(images, "laplacian") / np.maximum(_feature(images, "gradient"), 1e-6)
    return float(np.median(ratio))


def other(images: np.ndarray) -> float:
    """Median share of non-forest pixels (``realism.other_share``)."""
    from imagery.synthetic.realism import other_share

    return float(np.median(other_share(images)))


def fit_setting(
    section: str,
    key: str,
    statistic: Callable[[np.ndarray], float],
    target: float,
    span: tuple[float, float],
    *,
    rises: bool = True,
    mines_only: bool = False,
    geometric: bool = False,
    seed: int = 0,
    chips: int = 96,
    steps: int = 7,
) -> float:
    """Bisect the calibration value ``section.key`` within ``span`` until generated chips'
    ``statistic`` meets ``target``: on mine chips only, or the mean of the mine and non-mine
    values. ``rises``: the statistic grows with the value. The generator reads the cached
    calibration document, so each trial value is set there."""
    from imagery.synthetic import spectra
    from imagery.synthetic.chips import context_chips

    lo, hi = span
    for _ in range(steps + 1):
        value = float(np.sqrt(lo * hi)) if geometric else 0.5 * (lo + hi)
        spectra.calibration()[section][key] = value
        share = 1.0 if mines_only else 0.5
        images, labels, _ = context_chips(chips, seed, share, level="l1c", palette="amazon")
        if mines_only:
            got = statistic(images)
        else:
            got = 0.5 * (statistic(images[labels == 1]) + statistic(images[labels == 0]))
        if (got < target) == rises:
            lo = value
        else:
            hi = value
    return round(float(np.sqrt(lo * hi)) if geometric else 0.5 * (lo + hi), 4)


def derive(gallery_root: Path | None = None, seed: int = 0) -> dict:
    from imagery.gallery import ATTRIBUTION, load_gallery
    from imagery.synthetic.realism import (
        as_rendered,
        chip_features,
        feature_names,
        other_share,
        usable,
    )

    train = load_gallery(gallery_root).split("train")
    keep = usable(train.images)
    images, labels, mosaics = train.images[keep], train.labels[keep], train.mosaics[keep]
    flat = images.reshape(len(images), 3, -1).astype(np.float64)
    reference = _forest_reference(flat)
    tau, gain, residual = fit_atmosphere(reference)
    forest_like = (gain >= FOREST_LIKE[0]) & (gain <= FOREST_LIKE[1])
    tau_used = tau.copy()
    for m in np.unique(mosaics):
        own = (mosaics == m) & forest_like
        fill = np.median(tau[own]) if own.any() else np.median(tau[forest_like])
        tau_used[(mosaics == m) & ~forest_like] = fill
    rng = np.random.default_rng(seed)
    pick = rng.choice(np.flatnonzero(forest_like), PAIRS, replace=False)
    gain_median = float(np.median(gain[forest_like]))
    # the residual at TOA as a surface factor on the forest's visible bands
    atm = Atmosphere(tau550=float(np.median(tau[forest_like])))
    forest_vis = np.asarray(ENDMEMBERS["forest"])[VIS] * gain_median
    tilt = 1 + np.median(residual[forest_like], axis=0) / (atm.transmittance()[VIS] * forest_vis)

    pixels, share = _other_pixels(flat, tau_used, gain_median)
    mine_px = np.concatenate([p for p, lab in zip(pixels, labels, strict=True) if lab == 1])
    scene_px = np.concatenate([p for p, lab in zip(pixels, labels, strict=True) if lab == 0])
    mine = materials(mine_px, MINE_CANDIDATES, seed)
    for m in mine:
        m["role"] = ROLES[m["material"]]
    scene = materials(scene_px, SCENE_CANDIDATES, seed + 1)

    feats = chip_features(as_rendered(images[forest_like & (share < 0.02)]))
    mine_share = other_share(as_rendered(images[labels == 1]))
    names = feature_names()
    forest_grad = feats[:, [names.index(f"{b}_gradient") for b in VIS_NAMES]]
    forest_std = feats[:, [names.index(f"{b}_std") for b in VIS_NAMES]]
    doc = {
        "source": "Amazon Mining Watch training gallery (imagery.gallery), TRAIN split only: "
        f"{int((labels == 1).sum())} mine and {int((labels == 0).sum())} non-mine chips with "
        ">= 90 % valid pixels",
        "attribution": ATTRIBUTION,
        "license": "CC BY 4.0",
        "command": ".venv/bin/python -m imagery.synthetic.derive_calibration",
        "bands": list(BANDS),
        "atmosphere": {
            "note": "tau_550 and forest gain fitted per forest-like chip (atmosphere.py model, "
            "nominal geometry); the generator draws one pair per scene",
            "forest_like_chips": int(forest_like.sum()),
            "tau550_quantiles_5_25_50_75_95": np.percentile(tau[forest_like], [5, 25, 50, 75, 95])
            .round(3)
            .tolist(),
            "tau550_gain": np.column_stack([tau[pick], gain[pick]]).round(3).tolist(),
            "forest_tilt": np.round(tilt, 3).tolist(),
        },
        "forest": {
            "note": "real all-forest chips (forest-like, < 2 % other pixels): median gradient "
            "energy and standard deviation per band; the sensor-noise scale and the 40 px "
            "texture amplitude (patches) are fitted to them",
            "gradient_b02_b03_b04": np.median(forest_grad, axis=0).round(5).tolist(),
            "std_b02_b03_b04": np.median(forest_std, axis=0).round(5).tolist(),
            "noise": [1.0, 1.0, 1.0],
            "patches": 0.0,
            "chips": len(feats),
        },
        "non_forest_share": {
            "note": "share of a chip's pixels farther than NON_FOREST from its forest (TOA)",
            "mine_quantiles_25_50_75_90": np.percentile(share[labels == 1], [25, 50, 75, 90])
            .round(3)
            .tolist(),
            "non_mine_quantiles_25_50_75_90": np.percentile(share[labels == 0], [25, 50, 75, 90])
            .round(3)
            .tolist(),
        },
        "blur": {
            "note": "weight of one more 3-tap blur, fitted so that generated chips have the "
            "real chips' median Laplacian-to-gradient ratio",
            "roughness_mine_median": round(roughness(images[labels == 1]), 4),
            "roughness_non_mine_median": round(roughness(images[labels == 0]), 4),
            "composite": 0.0,
        },
        "texture": {
            "note": "multiplier of the painted land covers' texture amplitude, fitted so that "
            "generated mine chips have the real mine chips' median gradient energy",
            "gradient_mine_median": round(gradient(images[labels == 1]), 5),
            "gradient_non_mine_median": round(gradient(images[labels == 0]), 5),
            "layers": 1.0,
        },
        "mining": {
            "note": "extent scales the clusters' stretch, spread and halo; fitted so that the "
            "median other_share (realism.py) of generated mine chips matches the real ones'",
            "other_share_median": round(float(np.median(mine_share)), 3),
            "extent": 1.0,
        },
        "mine_materials": mine,
        "scene_materials": scene,
    }
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=Path, help="gallery folder (default ../shared/data/...)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    doc = derive(args.gallery, args.seed)
    # Textures, blur and extent are fitted with the generator itself, on the colours just
    # derived; each fit reads the others, so two rounds.
    OUT.write_text(json.dumps(doc, indent=1))
    from imagery.synthetic import spectra

    spectra.calibration.cache_clear()
    cal = spectra.calibration()  # the generator reads this cached doc: the fits update it
    forest, blur, texture = cal["forest"], cal["blur"], cal["texture"]
    for _ in range(ROUNDS):
        std = float(np.mean(forest["std_b02_b03_b04"]))
        forest["noise"], forest["patches"] = fit_texture(
            forest["gradient_b02_b03_b04"], std, forest["patches"], args.seed
        )
        rough = 0.5 * (blur["roughness_mine_median"] + blur["roughness_non_mine_median"])
        blur["composite"] = fit_setting(
            "blur", "composite", roughness, rough, (0.0, 0.3), rises=False, seed=args.seed
        )
        mining = cal["mining"]
        mining["extent"] = fit_setting(
            "mining",
            "extent",
            other,
            mining["other_share_median"],
            (0.05, 1.5),
            mines_only=True,
            seed=args.seed,
        )
        texture["layers"] = fit_setting(
            "texture",
            "layers",
            gradient,
            texture["gradient_mine_median"],
            (0.5, 8.0),
            mines_only=True,
            geometric=True,
            seed=args.seed,
        )
    doc = cal
    OUT.write_text(json.dumps(doc, indent=1))
    a = doc["atmosphere"]
    print(
        f"{a['forest_like_chips']} forest-like chips, tau550 quantiles "
        f"{a['tau550_quantiles_5_25_50_75_95']}, forest tilt {a['forest_tilt']}, "
        f"{len(doc['mine_materials'])} mine and {len(doc['scene_materials'])} scene materials, "
        f"forest noise {doc['forest']['noise']} patches {doc['forest']['patches']}, "
        f"mining extent {doc['mining']['extent']}, "
        f"land-cover texture x{doc['texture']['layers']}, blur {doc['blur']['composite']} "
        f"-> {OUT}"
    )


if __name__ == "__main__":
    main()
