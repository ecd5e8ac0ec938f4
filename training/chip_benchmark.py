"""The real-chip benchmark: does a bundle find real mines and leave real look-alikes alone?

Each chip of the Amazon Mining Watch gallery (``imagery.gallery``, real Sentinel-2 L1C, 48 px)
goes through the service's own ``Predictor`` as a one-chip scene; the chip's score is its best
site's score (0 when no site is reported). Chip labels are people-checked, so this measures what
users see: ranking quality (AUROC), sensitivity at high specificity, false-positive rates per kind
of look-alike, and whether scores read as probabilities (calibration).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine

from imagery.gallery import GALLERY_BANDS, NOMINAL_CRS, GalleryChips, nominal_transform
from imagery.scene import ArrayScene, Grid, take_bands
from imagery.sensors import SENTINEL2_L1C
from imagery.stats import roc_auc, sensitivity_at_specificity, threshold_at_specificity

SPECIFICITIES = (0.95, 0.98, 0.99)


@dataclass
class ChipScores:
    scores: np.ndarray  # best site score per chip, 0 where no site
    sites: np.ndarray  # number of sites reported per chip
    labels: np.ndarray
    categories: np.ndarray
    seconds: float
    notes: list[str]


def chip_sites(
    predictor: Any, image: np.ndarray, bands: list[str], sensor: str, number: int, options: Any
) -> list[Any]:
    """The sites ``predictor.detect`` reports on one chip (reflectance [C,H,W] in ``bands``,
    NaN = nodata) given as a one-chip scene on the gallery's nominal grid (cell ``number``)."""
    grid = Grid(
        CRS.from_string(NOMINAL_CRS),
        Affine(*nominal_transform(number)),
        image.shape[2],
        image.shape[1],
    )
    scene = ArrayScene(image, bands, grid, sensor, scene_id=f"chip-{number}")
    return predictor.detect(scene, options, tile_id=f"chip-{number}").sites


def predict_chips(predictor: Any, chips: GalleryChips, progress: bool = False) -> ChipScores:
    """Every chip through ``predictor.detect`` (min_score 0: every site the model reports)."""
    from tqdm import tqdm

    from service.predictor import DetectOptions

    bands = list(predictor.model_input.bands)
    sensors = predictor.info.get("sensors") or [predictor.info["sensor"]]
    sensor = SENTINEL2_L1C.name if SENTINEL2_L1C.name in sensors else sensors[0]
    notes = []
    if sensor != SENTINEL2_L1C.name:
        notes.append(f"the bundle reads {sensors}: the L1C chips were given as {sensor}")
    missing = [b for b in bands if b not in GALLERY_BANDS]
    if missing:
        notes.append(f"bands {missing} are not in the chips: filled as nodata (the band mean)")
    order = [GALLERY_BANDS.index(b) if b in GALLERY_BANDS else -1 for b in bands]
    options = DetectOptions(min_score=0.0, output_crs=NOMINAL_CRS)
    scores = np.zeros(len(chips), np.float32)
    sites = np.zeros(len(chips), np.int32)
    t0 = time.perf_counter()
    for i in tqdm(range(len(chips)), desc="chips", unit="chip", disable=not progress):
        data = take_bands(chips.images[i], order)
        found = chip_sites(predictor, data, bands, sensor, i, options)
        sites[i] = len(found)
        scores[i] = max((s.score for s in found), default=0.0)
    seconds = time.perf_counter() - t0
    return ChipScores(scores, sites, chips.labels.copy(), chips.categories.copy(), seconds, notes)


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability of scores read as P(mine): per-bin mean score vs observed frequency, expected
    calibration error (bin-weighted |gap|) and Brier score."""
    y = labels.astype(np.float64)
    p = np.clip(scores.astype(np.float64), 0, 1)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        gap = abs(p[m].mean() - y[m].mean())
        ece += m.mean() * gap
        table.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "chips": int(m.sum()),
                "mean_score": round(float(p[m].mean()), 4),
                "mine_fraction": round(float(y[m].mean()), 4),
            }
        )
    return {"ece": float(ece), "brier": float(np.mean((p - y) ** 2)), "reliability": table}


def chip_metrics(result: ChipScores, threshold: float) -> dict[str, Any]:
    """Every figure of the benchmark for one bundle's chip scores."""
    labelled = result.labels >= 0
    s, y = result.scores[labelled], result.labels[labelled] == 1
    cats = result.categories[labelled]
    out: dict[str, Any] = {
        "chips": int(labelled.sum()),
        "mines": int(y.sum()),
        "auroc": roc_auc(s, y),
        "flagged_mines_any_site": float((result.sites[labelled][y] > 0).mean()),
    }
    thresholds = {
        f"spec{spec:.2f}": threshold_at_specificity(s[~y], spec) for spec in SPECIFICITIES
    }
    for spec in SPECIFICITIES:
        out[f"sensitivity_at_spec{spec:.2f}"] = sensitivity_at_specificity(s, y, spec)
    thresholds["default"] = threshold
    out["thresholds"] = thresholds
    per_point: dict[str, dict[str, Any]] = {}
    for name, t in thresholds.items():
        flagged = s >= t if name == "default" else s > t
        tp, fp = int((flagged & y).sum()), int((flagged & ~y).sum())
        fn = int((~flagged & y).sum())
        point = {
            "threshold": t,
            "sensitivity": tp / max(1, tp + fn),
            "specificity": 1 - fp / max(1, int((~y).sum())),
            "precision": tp / max(1, tp + fp),
        }
        point["f1"] = 2 * tp / max(1, 2 * tp + fp + fn)
        point["fpr_by_category"] = {
            c: float(flagged[cats == c].mean()) for c in sorted(set(cats[~y]))
        }
        per_point[name] = point
    out["operating_points"] = per_point
    out["calibration"] = calibration(s, y)
    return out


def evaluate_bundle_on_chips(
    bundle: str | Path,
    chips: GalleryChips,
    device: str | None = "cpu",
    prefilter: bool = True,
    site_test: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a bundle into a ``Predictor`` and score ``chips``; metrics at the bundle's default
    threshold (``bundle.json`` ``default_threshold``, else the service's min_score default)."""
    from service.predictor import Predictor
    from training.bundle import load_bundle

    model = load_bundle(bundle, device=device)
    if not set(model.info["bands"]) <= set(GALLERY_BANDS):
        # NIR/SWIR are missing from the chips: the water/bare-soil test cannot run on them.
        prefilter = site_test = False
    predictor = Predictor(model, prefilter=prefilter, site_test=site_test)
    try:
        result = predict_chips(predictor, chips, progress=progress)
    finally:
        predictor.close()
    threshold = predictor.default_min_score
    metrics = chip_metrics(result, threshold)
    metrics["bundle"] = f"{model.info.get('name')} {model.info.get('version')}"
    metrics["seconds"] = result.seconds
    metrics["notes"] = result.notes
    return metrics
