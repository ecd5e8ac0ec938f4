"""Active learning: which chips or alerts should a person label next?

The ones the model is least sure about, measured two ways and combined (one rule, used by
``asmspotter label next`` and by ``benchmarks/bench_active_learning.py``):

- closeness to the decision threshold of the mean score over views: 1 at the threshold, 0 at a
  confident 0 or 1;
- disagreement between views: the spread (standard deviation) of the score over the 8 flips and
  quarter turns of the chip (or over checkpoints), 0.5 being the largest possible.

``uncertainty = 0.5 * closeness + 0.5 * min(1, 2 * spread)``. Numpy only; a scorer (the model)
is passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

VIEWS = 8  # the dihedral group of the square: 4 quarter turns, each also mirrored


def dihedral(images: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` (0..7) of [N,C,H,W] chips: ``k % 4`` quarter turns, mirrored when k >= 4."""
    x = images[..., ::-1] if k >= 4 else images
    return np.ascontiguousarray(np.rot90(x, k % 4, axes=(-2, -1)))


def view_scores(score: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """[VIEWS, N] scores of each chip under every view."""
    return np.stack([np.asarray(score(dihedral(images, k)), np.float64) for k in range(VIEWS)])


def uncertainty(view_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per chip, from [V, N] probabilities (views or checkpoints): higher = less sure."""
    p = np.atleast_2d(np.asarray(view_probs, np.float64))
    mean, spread = p.mean(axis=0), p.std(axis=0)
    closeness = 1.0 - np.abs(mean - threshold) / max(threshold, 1.0 - threshold)
    return 0.5 * np.clip(closeness, 0.0, 1.0) + 0.5 * np.minimum(1.0, 2.0 * spread)


def pick(scores: np.ndarray, budget: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``budget`` most uncertain chips, most uncertain first (ties: lower
    index first); ``exclude`` (bool per chip) marks chips already labelled."""
    scores = np.asarray(scores, np.float64).copy()
    if exclude is not None:
        scores[np.asarray(exclude, bool)] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[np.isfinite(scores[order])]
    return order[: max(0, budget)]


class ChipScorer:
    """A model bundle as a chip scorer: a chip's score is its best site's as the service gives
    it (``service.predictor.Predictor`` with its defaults, every site from score 0 up; the
    default bundle's sites carry the fused P(mine)), 0 with none. Chips [N,C,H,W] are
    reflectance in the bundle's bands (NaN = nodata), laid on the real-chip benchmark's
    nominal 10 m grid (``training.chip_benchmark.chip_sites``). Close it (or use
    ``with``) to stop the predictor."""

    def __init__(self, bundle: str, device: str | None = None) -> None:
        from service.predictor import Predictor
        from training.engines.base import default_threshold, optional_bands
        from training.model import load_bundle

        model = load_bundle(bundle, device)
        info = model.info
        self.bands: list[str] = list(info["bands"])
        self.optional_bands = optional_bands(info)
        self.sensor: str = info["sensor"]
        self.version = f"{info['name']}-{info['version']}"
        self.threshold = default_threshold(info)  # the bundle's decision threshold
        self.predictor = Predictor(model)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from imagery.gallery import NOMINAL_CRS
        from service.predictor import DetectOptions
        from training.chip_benchmark import chip_sites

        options = DetectOptions(min_score=0.0, output_crs=NOMINAL_CRS)
        scores = []
        for k, image in enumerate(np.asarray(images, np.float32)):
            found = chip_sites(self.predictor, image, self.bands, self.sensor, k, options)
            scores.append(max((site.score for site in found), default=0.0))
        return np.array(scores, np.float64)

    def close(self) -> None:
        self.predictor.close()

    def __enter__(self) -> ChipScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rank_tasks(
    tasks: list[dict], read_chip: Callable[[dict], np.ndarray], score: Callable, threshold: float
) -> list[dict]:
    """Unlabelled tasks with their uncertainty, most uncertain first."""
    rows = []
    for task in tasks:
        if task.get("annotations"):
            continue
        chip = read_chip(task["data"])[None]
        views = view_scores(score, chip)
        rows.append(
            {
                "task_id": task["id"],
                "chip_id": task["data"].get("chip_id") or task["data"].get("alert_id"),
                "uncertainty": float(uncertainty(views, threshold)[0]),
                "mean_score": float(views.mean()),
                "spread": float(views.std()),
            }
        )
    order = pick(np.array([r["uncertainty"] for r in rows]), len(rows))
    return [rows[i] for i in order]
