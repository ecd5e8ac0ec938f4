"""How close generated chips are to real ones: pixel distributions, chip features, a domain test.

Chips are float32 [N,3,H,W] top-of-atmosphere (or surface) reflectance in band order B02, B03,
B04 with NaN for nodata, the layout of ``imagery.gallery``. Both sides are first put through the
gallery's own rendering (``as_rendered``: clipped at 0.3 and quantised to its 8-bit levels), so
the comparison cannot tell them apart by an artefact of the rendering. Three figures:

* ``band_wasserstein``: the 1-D Wasserstein distance between the two pixel distributions of each
  band (reflectance units; the mean absolute difference of the quantile functions);
* ``frechet_distance``: the Fréchet distance between Gaussians fitted to per-chip colour and
  texture features (``chip_features``, standardised by the real chips' mean and spread), as in the
  Fréchet Inception Distance (Heusel et al. 2017) but on hand-made features;
* ``domain_auroc``: the cross-validated AUROC of a seeded classifier telling real from generated
  chips by those features (0.5 = indistinguishable, 1.0 = always told apart); logistic regression
  (linear) and k nearest neighbours (non-linear).

Torch-free, numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from imagery.stats import logistic_fit, roc_auc

SATURATION = 0.3  # the gallery's rendering: reflectance / 0.3 -> 0..255
LEVELS = 255
MIN_VALID = 0.9  # chips with fewer valid pixels (the gallery's 32 px set) are left out
BRIGHT = (0.12, 0.18)  # brightness thresholds of the bright-pixel fractions (reflectance)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
BAND_NAMES = ("B02", "B03", "B04")


def as_rendered(images: np.ndarray) -> np.ndarray:
    """Reflectance as the gallery renders it: clipped to [0, 0.3] and quantised to 8-bit levels;
    black (all bands 0) is nodata there, so it becomes NaN here as well."""
    q = np.round(np.clip(np.nan_to_num(images, nan=0.0), 0, SATURATION) / SATURATION * LEVELS)
    out = (q / LEVELS * SATURATION).astype(np.float32)
    nodata = ~np.isfinite(images).all(axis=1) | (q == 0).all(axis=1)
    return np.where(nodata[:, None], np.float32(np.nan), out)


def usable(images: np.ndarray, min_valid: float = MIN_VALID) -> np.ndarray:
    """bool [N]: chips with at least ``min_valid`` of their pixels valid in every band."""
    return np.isfinite(images).all(axis=1).mean(axis=(1, 2)) >= min_valid


def other_share(images: np.ndarray, distance: float = 0.04) -> np.ndarray:
    """[N] share of each chip's valid pixels farther than ``distance`` (reflectance, Euclidean over
    the bands) from the per-band median of its darkest quarter: roughly the share that is not
    forest (scars, ponds, rivers, fields, cloud) where forest covers at least a quarter."""
    x = images.reshape(len(images), images.shape[1], -1).astype(np.float64)
    out = np.zeros(len(images))
    for i, chip in enumerate(x):
        ok = np.isfinite(chip).all(axis=0)
        if not ok.any():
            continue
        v = chip[:, ok]
        bright = v.mean(axis=0)
        ref = np.median(v[:, bright <= np.quantile(bright, 0.25)], axis=1)
        out[i] = np.mean(np.sqrt(((v - ref[:, None]) ** 2).sum(axis=0)) > distance)
    return out


def feature_names() -> list[str]:
    names = []
    for b in BAND_NAMES:
        names += [f"{b}_mean", f"{b}_std"] + [f"{b}_q{int(q * 100):02d}" for q in QUANTILES]
    names += ["chroma_blue", "chroma_green", "colourfulness"]
    names += [f"{b}_gradient" for b in BAND_NAMES] + ["laplacian"]
    names += [f"bright_{t}" for t in BRIGHT] + ["saturated", "warm", "green_over_blue"]
    names += ["corr_blue_red", "corr_green_red"]
    return names


def chip_features(images: np.ndarray) -> np.ndarray:
    """float64 [N, F] colour and texture features of each chip (``feature_names``), over its valid
    pixels. Call on rendered chips (``as_rendered``)."""
    x = images.astype(np.float64)
    n = len(x)
    valid = np.isfinite(x).all(axis=1)  # [N,H,W]
    flat = x.reshape(n, 3, -1)
    vflat = valid.reshape(n, -1)
    feats = []
    with np.errstate(invalid="ignore", divide="ignore"):
        masked = np.where(vflat[:, None], flat, np.nan)
        mean = np.nanmean(masked, axis=2)
        std = np.nanstd(masked, axis=2)
        qs = np.nanquantile(masked, QUANTILES, axis=2)  # [Q,N,3]
        for b in range(3):
            feats += [mean[:, b], std[:, b]] + [qs[k, :, b] for k in range(len(QUANTILES))]
        total = mean.sum(axis=1)
        feats += [mean[:, 0] / total, mean[:, 1] / total]
        # Colourfulness of the rendered RGB (Hasler & Suesstrunk 2003), 0..255 scale.
        rgb = masked[:, ::-1] / SATURATION * LEVELS
        rg = rgb[:, 0] - rgb[:, 1]
        yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
        spread = np.sqrt(np.nanvar(rg, axis=1) + np.nanvar(yb, axis=1))
        centre = np.sqrt(np.nanmean(rg, axis=1) ** 2 + np.nanmean(yb, axis=1) ** 2)
        feats.append(spread + 0.3 * centre)
        # Texture: mean absolute neighbour difference per band, Laplacian of the brightness.
        dx = np.abs(np.diff(x, axis=3))
        dy = np.abs(np.diff(x, axis=2))
        grad = 0.5 * (
            np.nanmean(dx.reshape(n, 3, -1), axis=2) + np.nanmean(dy.reshape(n, 3, -1), 2)
        )
        feats += [grad[:, b] for b in range(3)]
        bright = x.mean(axis=1)
        lap = 4 * bright[:, 1:-1, 1:-1] - (
            bright[:, :-2, 1:-1] + bright[:, 2:, 1:-1] + bright[:, 1:-1, :-2] + bright[:, 1:-1, 2:]
        )
        feats.append(np.nanmean(np.abs(lap).reshape(n, -1), axis=1))
        count = vflat.sum(axis=1)
        bflat = bright.reshape(n, -1)
        for t in BRIGHT:
            feats.append(np.where(vflat, bflat > t, False).sum(axis=1) / count)
        sat = (flat >= SATURATION - 1e-6).any(axis=1) & vflat
        feats.append(sat.sum(axis=1) / count)
        feats.append((np.where(vflat, flat[:, 2] > flat[:, 0], False)).sum(axis=1) / count)
        feats.append((np.where(vflat, flat[:, 1] > flat[:, 0], False)).sum(axis=1) / count)
        for a, b in ((0, 2), (1, 2)):
            da = masked[:, a] - mean[:, a, None]
            db = masked[:, b] - mean[:, b, None]
            cov = np.nanmean(da * db, axis=1)
            feats.append(cov / (std[:, a] * std[:, b] + 1e-9))
    out = np.stack(feats, axis=1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def band_wasserstein(
    real: np.ndarray, gen: np.ndarray, levels: int = 2000, max_pixels: int = 400_000, seed: int = 0
) -> np.ndarray:
    """[3] 1-D Wasserstein distance per band between the valid pixels of two chip sets."""
    rng = np.random.default_rng(seed)
    qs = (np.arange(levels) + 0.5) / levels
    out = np.zeros(3)
    for b in range(3):
        sides = []
        for chips in (real, gen):
            v = chips[:, b].ravel()
            v = v[np.isfinite(v)]
            if len(v) > max_pixels:
                v = rng.choice(v, max_pixels, replace=False)
            sides.append(np.quantile(v, qs))
        out[b] = np.mean(np.abs(sides[0] - sides[1]))
    return out


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(real_feats: np.ndarray, gen_feats: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets, after standardising
    both by the real features' mean and standard deviation."""
    mu, sd = real_feats.mean(axis=0), real_feats.std(axis=0) + 1e-9
    a, b = (real_feats - mu) / sd, (gen_feats - mu) / sd
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sa = _sqrt_psd(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(sa @ cb @ sa), 0, None)).sum()
    return float(((ma - mb) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross)


def _knn_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray:
    d = (test_x**2).sum(1)[:, None] - 2 * test_x @ train_x.T + (train_x**2).sum(1)[None]
    nearest = np.argpartition(d, k, axis=1)[:, :k]
    return train_y[nearest].mean(axis=1)


def domain_auroc(
    real_feats: np.ndarray,
    gen_feats: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    classifier: str = "logistic",
    k: int = 15,
) -> float:
    """Cross-validated AUROC of a classifier telling generated (1) from real (0) chips by their
    features. The larger side is subsampled (seeded) to the smaller one's size; folds are
    stratified; features are standardised on each training fold."""
    rng = np.random.default_rng(seed)
    n = min(len(real_feats), len(gen_feats))
    if n < 2 * folds:
        raise ValueError(f"too few chips for {folds}-fold cross-validation: {n}")
    a = real_feats[rng.choice(len(real_feats), n, replace=False)]
    b = gen_feats[rng.choice(len(gen_feats), n, replace=False)]
    x = np.vstack([a, b])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    fold = np.concatenate([rng.permutation(n) % folds, rng.permutation(n) % folds])
    scores = np.zeros(2 * n)
    for f in range(folds):
        tr, te = fold != f, fold == f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        xtr, xte = (x[tr] - mu) / sd, (x[te] - mu) / sd
        if classifier == "logistic":
            w = logistic_fit(xtr, y[tr], l2=1.0, iters=25)
            scores[te] = xte @ w[:-1] + w[-1]
        elif classifier == "knn":
            scores[te] = _knn_scores(xtr, y[tr], xte, k)
        else:
            raise ValueError(f"unknown classifier {classifier!r}: logistic or knn")
    return roc_auc(scores, y)


@dataclass
class Realism:
    """The figures of one comparison (real vs generated chips)."""

    n_real: int
    n_generated: int
    wasserstein: list[float]  # per band B02, B03, B04 (reflectance)
    frechet: float
    auroc_logistic: float
    auroc_knn: float
    real_median: list[float]  # per band, over valid pixels
    generated_median: list[float]
    real_other_share: float  # median ``other_share`` (not-forest share of a chip)
    generated_other_share: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare(real: np.ndarray, generated: np.ndarray, seed: int = 0) -> Realism:
    """All figures for two chip sets ([N,3,H,W] reflectance B02,B03,B04; unusable chips dropped)."""
    real = as_rendered(real[usable(real)])
    generated = as_rendered(generated[usable(generated)])
    fr, fg = chip_features(real), chip_features(generated)
    return Realism(
        n_real=len(real),
        n_generated=len(generated),
        wasserstein=band_wasserstein(real, generated, seed=seed).round(5).tolist(),
        frechet=round(frechet_distance(fr, fg), 3),
        auroc_logistic=round(domain_auroc(fr, fg, seed=seed), 4),
        auroc_knn=round(domain_auroc(fr, fg, seed=seed, classifier="knn"), 4),
        real_median=np.nanmedian(real, axis=(0, 2, 3)).round(4).tolist(),
        generated_median=np.nanmedian(generated, axis=(0, 2, 3)).round(4).tolist(),
        real_other_share=round(float(np.median(other_share(real))), 3),
        generated_other_share=round(float(np.median(other_share(generated))), 3),
    )
