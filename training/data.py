"""COCO datasets of N-band GeoTIFF chips, band statistics and joint augmentations (numpy only).

A dataset folder holds ``annotations.json`` (see docs/design.md) and the chips it names. Images
without annotations are negatives and are kept. Both engines use this module: ``CocoChips`` reads
a chip in reflectance (NaN = nodata) with its instance masks, ``TrainingView`` normalises and
augments it, and ``load_train_data`` finds the train/val split and the per-band statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagery import feedback
from imagery.coco import segmentation_to_mask
from imagery.errors import AsmSpotterError, Reason
from imagery.scene import open_scene
from training.config import AugmentConfig, TrainConfig


@dataclass
class Sample:
    """One chip with its instances. ``image`` is reflectance (NaN = nodata) or normalised."""

    image: np.ndarray  # float32 [C,H,W]
    masks: np.ndarray  # bool [K,H,W]
    classes: np.ndarray  # int64 [K], 0-based index into the dataset's classes
    boxes: np.ndarray  # float32 [K,4] xyxy pixels (right/bottom edges exclusive)
    image_id: int
    file_name: str


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes of bool masks [K,H,W]; x1/y1 are exclusive pixel edges."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def resolve_annotations(path: str | Path) -> Path:
    """A folder holding annotations.json, or the JSON file itself."""
    path = Path(path)
    ann = path / "annotations.json" if path.is_dir() else path
    if not ann.is_file():
        raise AsmSpotterError(Reason.FILE_NOT_FOUND, "no COCO annotations.json here", str(path))
    return ann


class CocoChips:
    """A COCO instances file plus the N-band chips it points to, read in ``bands`` order."""

    def __init__(
        self,
        path: str | Path,
        bands: list[str],
        classes: list[str] | None = None,
        split: str | None = None,
        optional_bands: Sequence[str] = (),
    ) -> None:
        self.ann_file = resolve_annotations(path)
        self.root = self.ann_file.parent
        self.bands = list(bands)
        self.optional_bands = tuple(optional_bands)  # read as nodata from chips without them
        try:
            self.coco: dict[str, Any] = json.loads(self.ann_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AsmSpotterError(
                Reason.INVALID_ANNOTATION, f"not a JSON file ({exc})", str(self.ann_file)
            ) from exc
        for key in ("images", "annotations", "categories"):
            if not isinstance(self.coco.get(key), list):
                raise AsmSpotterError(
                    Reason.INVALID_ANNOTATION, f"COCO file lacks a {key!r} list", str(self.ann_file)
                )
        cat_names = {c["id"]: c["name"] for c in self.coco["categories"]}
        self.classes = list(classes) if classes else [cat_names[k] for k in sorted(cat_names)]
        self.category_to_class: dict[int, int] = {}
        for cat_id, name in cat_names.items():
            if name in self.classes:
                self.category_to_class[cat_id] = self.classes.index(name)
        self.images = [
            img for img in self.coco["images"] if split is None or img.get("split") == split
        ]
        self.anns_by_image: dict[int, list[dict]] = {img["id"]: [] for img in self.images}
        for ann in self.coco["annotations"]:
            if ann["image_id"] in self.anns_by_image and not ann.get("iscrowd", 0):
                if ann["category_id"] in self.category_to_class:
                    self.anns_by_image[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_ids(self) -> list[int]:
        return [img["id"] for img in self.images]

    def path_of(self, index: int) -> Path:
        return self.root / self.images[index]["file_name"]

    def read_image(self, index: int) -> np.ndarray:
        """float32 [C,H,W] reflectance in ``bands`` order; NaN = nodata."""
        with open_scene(
            self.path_of(index), bands=self.bands, optional_bands=self.optional_bands
        ) as scene:
            return scene.read()

    def __getitem__(self, index: int) -> Sample:
        img = self.images[index]
        image = self.read_image(index)
        h, w = image.shape[1:]
        anns = self.anns_by_image[img["id"]]
        masks = np.zeros((len(anns), h, w), bool)
        for k, ann in enumerate(anns):
            masks[k] = segmentation_to_mask(ann["segmentation"], h, w)
        classes = np.array([self.category_to_class[a["category_id"]] for a in anns], dtype=np.int64)
        keep = masks.any(axis=(1, 2))
        masks, classes = masks[keep], classes[keep]
        return Sample(image, masks, classes, boxes_from_masks(masks), img["id"], img["file_name"])

    def subset_coco(self) -> dict[str, Any]:
        """The COCO dict restricted to this split (for pycocotools' ground truth)."""
        ids = set(self.image_ids)
        return {
            **self.coco,
            "images": self.images,
            "annotations": [a for a in self.coco["annotations"] if a["image_id"] in ids],
        }


@dataclass
class BandStats:
    mean: list[float]
    std: list[float]


def band_statistics(chips: CocoChips, max_samples: int = 200, seed: int = 0) -> BandStats:
    """Per-band mean/std in reflectance over (a sample of) the chips, nodata ignored."""
    if len(chips) == 0:
        raise AsmSpotterError(Reason.INVALID_ANNOTATION, "the dataset has no images")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(chips))[: max(1, max_samples)]
    c = len(chips.bands)
    n = np.zeros(c)
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for i in order:
        image = chips.read_image(int(i)).reshape(c, -1).astype(np.float64)
        valid = ~np.isnan(image)
        n += valid.sum(axis=1)
        image = np.where(valid, image, 0.0)
        total += image.sum(axis=1)
        total_sq += (image**2).sum(axis=1)
    if (n == 0).any():
        raise AsmSpotterError(Reason.ALL_NODATA, "a band holds only nodata in the sampled chips")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    std = np.maximum(std, 1e-4)  # a constant band must not blow up the normalisation
    return BandStats(mean.tolist(), std.tolist())


class Augmenter:
    """Joint augmentations of a normalised image [C,H,W] and its masks [K,H,W]."""

    def __init__(self, cfg: AugmentConfig, optional: Sequence[int] = ()) -> None:
        self.cfg = cfg
        self.optional = list(optional)  # band positions that ``optional_dropout`` zeroes together

    def __call__(
        self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        if rng.random() < cfg.hflip:
            image, masks = image[:, :, ::-1], masks[:, :, ::-1]
        if rng.random() < cfg.vflip:
            image, masks = image[:, ::-1], masks[:, ::-1]
        if cfg.rot90:
            k = int(rng.integers(4))
            image, masks = np.rot90(image, k, axes=(1, 2)), np.rot90(masks, k, axes=(1, 2))
        image = np.array(image, dtype=np.float32)  # contiguous copy, safe to edit in place
        c = image.shape[0]
        if cfg.contrast > 0:
            image *= rng.uniform(1 - cfg.contrast, 1 + cfg.contrast, (c, 1, 1)).astype(np.float32)
        if cfg.brightness > 0:
            image += rng.uniform(-cfg.brightness, cfg.brightness, (c, 1, 1)).astype(np.float32)
        if cfg.band_dropout > 0 and c > 1:
            drop = rng.random(c) < cfg.band_dropout
            if not drop.all():
                image[drop] = 0.0  # 0 = the band's dataset mean after normalising
        if self.optional and cfg.optional_dropout > 0 and rng.random() < cfg.optional_dropout:
            image[self.optional] = 0.0  # as a source without these bands gives them
        return image, np.ascontiguousarray(masks)


def normalize_image(image: np.ndarray, stats: BandStats) -> np.ndarray:
    """[C,H,W] reflectance -> normalised float32, NaN -> 0 (after normalising): the rule of
    ``training.engines.base.normalize``, which every model input goes through."""
    from training.engines.base import normalize

    return normalize(image[None], stats.mean, stats.std)[0]


class TrainingView:
    """Normalised (and, for training, augmented) samples of a ``CocoChips``; numpy only.

    Randomness is a function of (seed, epoch, index), so a resumed run sees the same samples.
    """

    def __init__(
        self,
        chips: CocoChips,
        stats: BandStats,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        optional: Sequence[int] = (),
    ) -> None:
        self.chips = chips
        self.stats = stats
        self.augmenter = Augmenter(augment, optional) if augment is not None else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> Sample:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int) -> Sample:
        """Sample ``index`` as augmented in ``epoch`` (for samplers that span epochs)."""
        sample = self.chips[index]
        image = normalize_image(sample.image, self.stats)
        masks = sample.masks
        if self.augmenter is not None:
            rng = np.random.default_rng((self.seed, epoch, index))
            image, masks = self.augmenter(image, masks, rng)
        return Sample(
            image, masks, sample.classes, boxes_from_masks(masks), sample.image_id, sample.file_name
        )


def chips_for_model(path: str | Path, info: dict[str, Any], split: str | None = None) -> CocoChips:
    """``path``'s chips as the model of ``info`` (bundle.json) reads them: its bands and
    classes, its optional bands as nodata where the chips lack them."""
    from training.engines.base import optional_bands

    return CocoChips(path, list(info["bands"]), list(info["classes"]), split, optional_bands(info))


@dataclass
class TrainData:
    """What an engine trains on: train/val chips plus the per-band statistics (reflectance)."""

    train: CocoChips
    val: CocoChips | None
    stats: BandStats
    sources: dict[str, str] = field(default_factory=dict)  # for the model card

    @property
    def mean(self) -> list[float]:
        return self.stats.mean

    @property
    def std(self) -> list[float]:
        return self.stats.std


def _split_sources(cfg: TrainConfig, data_dir: str | Path | None) -> tuple[Any, Any]:
    """(train, val) as (path, split) pairs; val may be None."""
    if cfg.train_data:
        return (cfg.train_data, None), ((cfg.val_data, None) if cfg.val_data else None)
    if data_dir is None:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, "no training data: pass --data DIR or set train_data"
        )
    root = Path(data_dir)
    if (root / "train" / "annotations.json").is_file():
        val = root / "val"
        return (root / "train", None), (
            (val, None) if (val / "annotations.json").is_file() else None
        )
    ann = resolve_annotations(root)
    splits = {img.get("split") for img in json.loads(ann.read_text()).get("images", [])}
    if "train" in splits:
        return (ann, "train"), ((ann, "val") if "val" in splits else None)
    return (ann, None), None


def load_train_data(cfg: TrainConfig, data_dir: str | Path | None = None) -> TrainData:
    """Train/val chips from ``cfg.train_data``/``val_data`` or a folder.

    The folder is ``DIR/{train,val}/`` or one ``annotations.json`` whose images carry ``split`` =
    train/val (no split field: all images train, no validation). Stats come from the train split.
    """
    (train_path, train_split), val_src = _split_sources(cfg, data_dir)
    optional = cfg.optional_bands
    train = CocoChips(train_path, cfg.bands, cfg.classes, train_split, optional)
    if len(train) == 0:
        raise AsmSpotterError(Reason.INVALID_ANNOTATION, "the training split has no images")
    val = CocoChips(val_src[0], cfg.bands, cfg.classes, val_src[1], optional) if val_src else None
    if cfg.normalization:
        stats = BandStats(list(cfg.normalization["mean"]), list(cfg.normalization["std"]))
    else:
        feedback.step(
            f"train: band statistics from {min(len(train), cfg.stats_samples)} of {len(train)} "
            "training chips"
        )
        stats = band_statistics(train, cfg.stats_samples, cfg.seed)
    sources = {"train": f"{train.ann_file}" + (f" [split={train_split}]" if train_split else "")}
    if val is not None:
        sources["val"] = f"{val.ann_file}" + (f" [split={val_src[1]}]" if val_src[1] else "")
    return TrainData(train, val, stats, sources)
