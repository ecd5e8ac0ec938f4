"""Real chips for the detector: pseudo-masks on mine chips, background on the rest.

The real gallery labels chips, not pits, and Mask R-CNN needs instance masks. A teacher (a
detector and the context verifier) outlines a mine chip's sites; the chip's label constrains it:
a non-mine chip gets no instance at all (a background image, no teacher needed), a mine chip only
when the verifier agrees that it shows mining, and then its best detection plus those the
detector itself is fairly sure of, without overlaps. The result is a COCO part that
``imagery.coco.merge_datasets`` adds to the synthetic chips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagery.gallery import GalleryChips


@dataclass(frozen=True)
class PseudoRule:
    """Which teacher detections of a mine chip become its instances."""

    min_chip_probability: float = 0.8  # the verifier's P(mine) of the chip
    min_detector_score: float = 0.2  # besides the chip's best detection
    max_sites: int = 8
    overlap_iou: float = 0.3  # a detection overlapping a kept one this much is dropped


def pseudo_sites(
    masks: np.ndarray, scores: np.ndarray, label: int, p_chip: float, rule: PseudoRule
) -> list[int]:
    """Indices (best first) of a chip's detections kept as instances; ``masks`` bool [K,H,W]."""
    if label != 1 or p_chip < rule.min_chip_probability or not len(scores):
        return []
    kept: list[int] = []
    for rank, k in enumerate(np.argsort(-np.asarray(scores), kind="stable")):
        if len(kept) == rule.max_sites:
            break
        if rank and scores[k] < rule.min_detector_score:
            break
        m = masks[k]
        if not m.any():
            continue
        if all((m & masks[j]).sum() / (m | masks[j]).sum() < rule.overlap_iou for j in kept):
            kept.append(int(k))
    return kept


def teacher_instances(
    model: Any, chips: GalleryChips, rule: PseudoRule, floor: float, batch: int = 16
) -> dict[int, list[tuple[np.ndarray, str, float]]]:
    """Row -> [(mask, class name, detector score)] for the mine chips of ``chips`` the rule keeps.
    ``model``: a loaded bundle (``DetectionModel``) whose ``site_scorer`` is its verifier."""
    mines = np.flatnonzero(chips.labels == 1)
    p_chip = model.site_scorer.probabilities(chips.images[mines])
    classes = list(model.info["classes"])
    found: dict[int, list[tuple[np.ndarray, str, float]]] = {}
    for start in range(0, len(mines), batch):
        rows = mines[start : start + batch]
        for j, pred in enumerate(model.predict(chips.images[rows], floor)):
            k = start + j
            keep = pseudo_sites(pred.masks, pred.scores, 1, float(p_chip[k]), rule)
            if keep:
                found[int(mines[k])] = [
                    (pred.masks[i], classes[int(pred.classes[i])], float(pred.scores[i]))
                    for i in keep
                ]
    return found


def write_real_part(
    out_dir: Path,
    chips: GalleryChips,
    rows: list[int],
    instances: dict[int, list[tuple[np.ndarray, str, float]]],
) -> Path:
    """``rows`` of ``chips`` as a COCO part (split ``train``): the chips as ``import-gallery``
    writes them (``imagery.gallery.write_chip``) and ``instances`` as their annotations (rows
    without any are background images)."""
    from imagery import coco
    from imagery.gallery import ATTRIBUTION, write_chip

    images: list[dict] = []
    annotations: list[dict] = []
    for n, row in enumerate(rows, start=1):
        images.append(write_chip(out_dir, chips, row, n, "train"))
        for mask, cls, score in instances.get(row, []):
            annotations.append(
                coco.annotation(len(annotations) + 1, n, mask, cls, teacher_score=score)
            )
    data = coco.dataset(
        images, annotations, source=ATTRIBUTION, pseudo_masks="a teacher's detections"
    )
    (out_dir / "annotations.json").write_text(json.dumps(data))
    return out_dir
