"""Detectron2 data plumbing for N-band COCO chips: catalog entries, the N-band mapper, the dataset
the shared sampler (``training.sampling``) draws from and the ground-truth file ``COCOEvaluator``
reads.

Detectron2's own ``DatasetMapper``/``read_image`` handle 1 or 3 channels only; ``NBandMapper``
reads chips through ``training.data.CocoChips`` (the imagery core), applies the shared numpy
augmentations jointly to the masks and hands the model normalised bands (nodata = 0, the band
mean), as ``training.engines.base.prepare_input`` does for every model call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BitMasks, Boxes
from detectron2.structures import Instances as D2Instances
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from training.config import AugmentConfig
from training.data import Augmenter, BandStats, CocoChips, boxes_from_masks, normalize_image
from training.engines.base import prepare_input


def dataset_dicts(chips: CocoChips) -> list[dict[str, Any]]:
    """Detectron2 dataset dicts: one per chip, ``index`` into ``chips`` (negatives included)."""
    return [
        {
            "file_name": str(chips.path_of(i)),
            "image_id": img["id"],
            "height": img.get("height"),
            "width": img.get("width"),
            "index": i,
        }
        for i, img in enumerate(chips.images)
    ]


def register(name: str, chips: CocoChips, gt_json: Path | None = None) -> None:
    """(Re)register ``chips`` as ``name`` in ``DatasetCatalog``/``MetadataCatalog``."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dataset_dicts(chips))
    class_to_category = {v: k for k, v in chips.category_to_class.items()}
    meta = MetadataCatalog.get(name)
    meta.set(
        thing_classes=list(chips.classes),
        thing_dataset_id_to_contiguous_id={
            class_to_category[c]: c for c in range(len(chips.classes)) if c in class_to_category
        },
        evaluator_type="coco",
    )
    if gt_json is not None:
        meta.set(json_file=str(gt_json))


def write_ground_truth(chips: CocoChips, path: Path) -> Path:
    """The chips' instances rasterised exactly as training sees them, as a COCO file (RLE)."""
    class_to_category = {v: k for k, v in chips.category_to_class.items()}
    images, annotations = [], []
    for i, img in enumerate(chips.images):
        sample = chips[i]
        h, w = sample.image.shape[1:]
        images.append({"id": img["id"], "file_name": img["file_name"], "height": h, "width": w})
        for mask, cls in zip(sample.masks, sample.classes, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img["id"],
                    "category_id": class_to_category[int(cls)],
                    "segmentation": rle,
                    "area": float(mask.sum()),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
    categories = [c for c in chips.coco["categories"] if c["id"] in chips.category_to_class]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def rescale(image: torch.Tensor, scale: float) -> torch.Tensor:
    """[C,H,W] resized by ``scale`` (bilinear); a pixel is always 10 m, so the factor is fixed."""
    if scale == 1.0:
        return image
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


class NBandMapper:
    """Dataset dict -> model input: ``image`` [C,H,W] reflectance tensor, ``instances`` (train).

    Augmentation randomness is a function of (seed, epoch, index) so a resumed run sees the same
    samples; ``epoch`` comes with the dict (see ``EpochDataset``).
    """

    def __init__(
        self,
        chips: CocoChips,
        stats: BandStats,
        augment: AugmentConfig | None,
        seed: int = 0,
        input_scale: float = 1.0,
        is_train: bool = True,
        optional: Sequence[int] = (),
    ) -> None:
        self.chips = chips
        self.stats = stats
        # validation chips are prepared as every model call prepares its input (no padding:
        # COCOEvaluator scores the chip as it is)
        self.info = {"normalization": {"mean": stats.mean, "std": stats.std}}
        self.augmenter = Augmenter(augment, optional) if augment is not None and is_train else None
        self.seed = seed
        self.input_scale = input_scale
        self.is_train = is_train

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        index = int(dataset_dict["index"])
        sample = self.chips[index]
        if not self.is_train:  # ground truth rides along for the object-level evaluator
            h, w = sample.image.shape[1:]
            image = prepare_input(sample.image[None], self.info)[0]
            return {
                "image": rescale(torch.from_numpy(image), self.input_scale),
                "height": h,
                "width": w,
                "image_id": dataset_dict["image_id"],
                "gt_masks": sample.masks,
                "gt_classes": sample.classes,
            }
        image = normalize_image(sample.image, self.stats)  # what the model reads
        masks = sample.masks
        if self.augmenter is not None:
            rng = np.random.default_rng((self.seed, int(dataset_dict.get("epoch", 0)), index))
            image, masks = self.augmenter(image, masks, rng)
        h, w = image.shape[1:]
        tensor = rescale(
            torch.from_numpy(np.ascontiguousarray(image, np.float32)), self.input_scale
        )
        mask_t = torch.from_numpy(np.ascontiguousarray(masks))
        boxes = torch.from_numpy(boxes_from_masks(masks)).reshape(-1, 4)
        if self.input_scale != 1.0:
            size = tuple(tensor.shape[-2:])
            mask_t = F.interpolate(mask_t[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
            boxes = boxes * self.input_scale
        instances = D2Instances(tuple(tensor.shape[-2:]))
        instances.gt_boxes = Boxes(boxes.float())
        instances.gt_classes = torch.from_numpy(sample.classes).long()
        instances.gt_masks = BitMasks(mask_t.bool())
        return {
            "image": tensor,
            "instances": instances,
            "height": h,
            "width": w,
            "image_id": dataset_dict["image_id"],
        }


class EpochDataset(Dataset):
    """Map-style dataset over ``(epoch, index)`` keys (``training.sampling.RunSampler``): the
    mapper learns the sample's epoch."""

    def __init__(self, dicts: list[dict[str, Any]], mapper: NBandMapper) -> None:
        self.dicts = dicts
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.dicts)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        return self.mapper({**self.dicts[int(index)], "epoch": int(epoch)})
