"""Engine-agnostic evaluation of a ``DetectionModel`` on a COCO chip set.

COCO bbox and segm AP/AP50 with pycocotools (ground truth rasterised by ``imagery.coco`` so it is
exactly what training saw), plus object-level precision/recall/F1 at mask IoU >= 0.5 per class:
each prediction above ``f1_score_threshold`` matches at most one ground-truth instance of its class,
greedily by score.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from training.data import CocoChips, Sample, chips_for_model
from training.engines.base import DetectionModel, Instances


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _mask_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU matrix [P,G] of bool masks [P,H,W] and [G,H,W]."""
    p = pred.reshape(len(pred), -1).astype(np.float32)
    g = gt.reshape(len(gt), -1).astype(np.float32)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match_counts(
    pred: Instances, gt: Sample, n_classes: int, iou_threshold: float = 0.5
) -> np.ndarray:
    """[n_classes, 3] counts of (true positives, false positives, false negatives)."""
    counts = np.zeros((n_classes, 3), np.int64)
    for c in range(n_classes):
        p_idx = np.flatnonzero(pred.classes == c)
        g_idx = np.flatnonzero(gt.classes == c)
        p_idx = p_idx[np.argsort(-pred.scores[p_idx], kind="stable")]
        matched = 0
        if len(p_idx) and len(g_idx):
            ious = _mask_iou(pred.masks[p_idx], gt.masks[g_idx])
            used = np.zeros(len(g_idx), bool)
            for row in ious:
                row = np.where(used, -1.0, row)
                j = int(row.argmax())
                if row[j] >= iou_threshold:
                    used[j] = True
                    matched += 1
        counts[c] = (matched, len(p_idx) - matched, len(g_idx) - matched)
    return counts


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    """Precision, recall and F1 of object counts: the one rule of evaluation and training."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def _coco_ap(gt: COCO, results: list[dict], iou_type: str) -> dict[str, float]:
    if not results or not gt.dataset["annotations"]:
        return {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50 = (max(float(v), 0.0) for v in ev.stats[:2])  # -1 = nothing to score
    return {"AP": ap, "AP50": ap50}


def _batches(chips: CocoChips, batch_size: int) -> list[list[int]]:
    """Consecutive images of the same size, at most ``batch_size`` at a time."""
    batches: list[list[int]] = []
    for i, img in enumerate(chips.images):
        shape = (img.get("height"), img.get("width"))
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and chips.images[last[0]].get("height") == shape[0]:
            if chips.images[last[0]].get("width") == shape[1]:
                last.append(i)
                continue
        batches.append([i])
    return batches


def _rescored(scorer: Any, image: np.ndarray, pred: Instances, info: dict) -> Instances:
    """``pred`` on a chip (reflectance [C,H,W]) with the scores the service would give."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from imagery.scene import ArrayScene, Grid
    from service.sites import rescore_masks

    if not len(pred):
        return pred
    grid = Grid(CRS.from_epsg(3857), Affine.identity(), image.shape[2], image.shape[1])
    scene = ArrayScene(image, list(info["bands"]), grid, info["sensor"])
    scores = rescore_masks(scorer, scene, list(pred.masks), [float(x) for x in pred.scores])
    return Instances(pred.masks, np.asarray(scores, np.float32), pred.classes, pred.boxes)


def evaluate_model(
    model: DetectionModel,
    chips: CocoChips,
    batch_size: int = 4,
    score_threshold: float | None = None,
    f1_score_threshold: float | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """COCO AP (bbox, segm) and object-level P/R/F1 per class of ``model`` on ``chips``."""
    from training.engines.base import default_threshold, score_floor

    if score_threshold is None:  # every detection the network reports
        score_threshold = score_floor(model.info)
    if f1_score_threshold is None:  # the threshold users get: the bundle's default
        f1_score_threshold = default_threshold(model.info)
    classes = list(model.info["classes"])
    # the bundle's site scorer (its verifier) rescores every prediction, as in the service
    scorer = getattr(model, "site_scorer", None)
    cat_ids = {c["name"]: c["id"] for c in chips.coco["categories"]}
    gt_images, gt_anns, results = [], [], []
    counts = np.zeros((len(classes), 3), np.int64)
    for batch in _batches(chips, batch_size):
        samples = [chips[i] for i in batch]
        # with a scorer every detection the network reports is rescored, then thresholded
        floor = score_floor(model.info) if scorer is not None else score_threshold
        preds = model.predict(np.stack([s.image for s in samples]), floor)
        for sample, pred in zip(samples, preds, strict=True):
            if scorer is not None:
                pred = _rescored(scorer, sample.image, pred, model.info).above(score_threshold)
            h, w = sample.image.shape[1:]
            gt_images.append({"id": sample.image_id, "height": h, "width": w})
            for mask, cls in zip(sample.masks, sample.classes, strict=True):
                rle = _rle(mask)
                gt_anns.append(
                    {
                        "id": len(gt_anns) + 1,
                        "image_id": sample.image_id,
                        "category_id": cat_ids[chips.classes[cls]],
                        "segmentation": rle,
                        "area": float(mask.sum()),
                        "bbox": mask_utils.toBbox(rle).tolist(),
                        "iscrowd": 0,
                    }
                )
            for k in range(len(pred)):
                name = classes[int(pred.classes[k])]
                if name not in cat_ids:  # a class this COCO set does not label
                    continue
                x0, y0, x1, y1 = (float(v) for v in pred.boxes[k])
                base = {
                    "image_id": sample.image_id,
                    "category_id": cat_ids[name],
                    "score": float(pred.scores[k]),
                }
                results.append({**base, "bbox": [x0, y0, x1 - x0, y1 - y0]})
                results.append({**base, "segmentation": _rle(pred.masks[k]), "_segm": True})
            confident = pred.scores >= f1_score_threshold
            kept = Instances(
                pred.masks[confident],
                pred.scores[confident],
                pred.classes[confident],
                pred.boxes[confident],
            )
            counts += match_counts(kept, _as_model_classes(sample, chips, classes), len(classes))
    gt = COCO()
    gt.dataset = {
        "images": gt_images,
        "annotations": gt_anns,
        "categories": chips.coco["categories"],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    bbox = _coco_ap(gt, [r for r in results if "bbox" in r], "bbox")
    segm = _coco_ap(gt, [_strip(r) for r in results if r.get("_segm")], "segm")
    per_class = {name: prf(*map(int, counts[c])) for c, name in enumerate(classes)}
    overall = prf(*map(int, counts.sum(axis=0)))
    return {
        "bbox": bbox,
        "segm": segm,
        "mask_AP": segm["AP"],
        "mask_AP50": segm["AP50"],
        "bbox_AP": bbox["AP"],
        "bbox_AP50": bbox["AP50"],
        "objects": {
            "iou_threshold": iou_threshold,
            "score_threshold": f1_score_threshold,
            "per_class": per_class,
            "all": overall,
        },
        "f1": overall["f1"],
        "n_images": len(gt_images),
        "n_instances": len(gt_anns),
    }


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "_segm"}


def _as_model_classes(sample: Sample, chips: CocoChips, classes: list[str]) -> Sample:
    """Ground-truth class indexes re-expressed in the model's class order."""
    remap = np.array([classes.index(n) if n in classes else -1 for n in chips.classes], np.int64)
    mapped = remap[sample.classes] if len(sample.classes) else sample.classes
    return Sample(
        sample.image, sample.masks, mapped, sample.boxes, sample.image_id, sample.file_name
    )


def evaluate_to_file(
    model: DetectionModel, coco_path: str | Path, out: str | Path | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Evaluate a bundle's model on a COCO file/folder; write the metrics JSON when ``out``."""
    chips = chips_for_model(coco_path, model.info)
    metrics = evaluate_model(model, chips, **kwargs)
    metrics["dataset"] = str(chips.ann_file)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(metrics, indent=2))
    return metrics
