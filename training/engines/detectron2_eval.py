"""Object-level precision/recall/F1 at mask IoU 0.5 as a Detectron2 ``DatasetEvaluator``.

Runs beside ``COCOEvaluator`` on the same predictions, with ``training.evaluate.match_counts`` and
``prf`` (the rules ``asmspotter evaluate`` uses): checkpoints carry the same ``f1`` as evaluation.
The evaluation mapper passes each chip's ground truth along (``gt_masks``, ``gt_classes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from training.data import Sample
from training.engines.base import Instances
from training.evaluate import match_counts, prf


class ObjectF1Evaluator(DatasetEvaluator):
    def __init__(
        self, classes: list[str], score_threshold: float = 0.5, iou_threshold: float = 0.5
    ) -> None:
        self.classes = list(classes)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        self.counts = np.zeros((len(self.classes), 3), np.int64)

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs, strict=True):
            inst = out["instances"].to("cpu")
            keep = (inst.scores >= self.score_threshold).numpy()
            h, w = inp["height"], inp["width"]
            pred = Instances(
                masks=inst.pred_masks.numpy()[keep]
                if inst.has("pred_masks")
                else np.zeros((0, h, w), bool),
                scores=inst.scores.numpy()[keep],
                classes=inst.pred_classes.numpy()[keep].astype(np.int64),
                boxes=inst.pred_boxes.tensor.numpy()[keep],
            )
            gt = Sample(
                np.zeros((0, h, w), np.float32),
                inp["gt_masks"],
                inp["gt_classes"],
                np.zeros((len(inp["gt_classes"]), 4), np.float32),
                inp["image_id"],
                "",
            )
            self.counts += match_counts(pred, gt, len(self.classes), self.iou_threshold)

    def evaluate(self) -> dict[str, Any]:
        counts = sum(comm.gather(self.counts, dst=0))
        if not comm.is_main_process():
            return {}
        per_class = {name: prf(*map(int, counts[c])) for c, name in enumerate(self.classes)}
        return {"objects": {**per_class, "all": prf(*map(int, counts.sum(axis=0)))}}
