"""Training configuration: one dataclass, read from a YAML/JSON file plus ``key=value`` overrides.

Both engines read the same ``TrainConfig``; each declares the fields it honours
(``Engine.honours``) and refuses the others when they are set. Engine-specific extras go into
``engine_options`` (Detectron2 config keys; the torchvision engine takes none). Iteration counts
are optimiser steps; ``epochs`` > 0 replaces ``max_iter`` by ``epochs * ceil(len(train) /
batch_size)`` (and scales ``steps`` accordingly).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imagery.coco import CLASS_NAMES
from imagery.errors import AsmSpotterError, Reason
from imagery.sensors import S2_STACK


@dataclass
class AugmentConfig:
    """Joint image+mask augmentations (numpy, shared by both engines)."""

    hflip: float = 0.5  # probability
    vflip: float = 0.5
    rot90: bool = True  # random multiple of 90 degrees
    brightness: float = 0.1  # +- shift per band, in units of that band's std
    contrast: float = 0.1  # multiply each band by 1 +- this
    band_dropout: float = 0.05  # probability per band of zeroing it (= the dataset mean)
    # probability per chip of zeroing all of TrainConfig.optional_bands together: the input a
    # source without them (RGB-only chips) gives, as nodata filled by the band mean
    optional_dropout: float = 0.0


@dataclass
class TrainConfig:
    # what is trained
    engine: str = "torchvision"
    name: str = "asm-maskrcnn"
    version: str = "0.1.0"
    sensor: str = "sentinel2-l2a"
    sensors: list[str] = field(default_factory=list)  # all the bundle accepts; [] = [sensor]
    bands: list[str] = field(default_factory=lambda: list(S2_STACK))
    # bands the model can run without (e.g. NIR/SWIR of a 6-band model that also reads RGB-only
    # sources): an input lacking them reads them as nodata, which the model fills by the band mean
    optional_bands: list[str] = field(default_factory=list)
    chip_size: int = 256
    classes: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    # data (folders holding annotations.json; --data DIR fills both from DIR/{train,val})
    train_data: str | None = None
    val_data: str | None = None
    stats_samples: int = 200  # chips read to estimate per-band mean/std
    oversample_positives: int = 1  # chips with sites appear this many times per epoch
    # optimisation
    batch_size: int = 4
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    max_iter: int = 3000
    epochs: int = 0  # > 0 overrides max_iter
    warmup_iters: int = 200
    warmup_factor: float = 0.001
    schedule: str = "multistep"  # multistep | cosine
    steps: list[int] = field(default_factory=lambda: [2000, 2600])  # lr x gamma at these iters
    gamma: float = 0.1
    clip_grad: float = 10.0  # max gradient L2 norm; 0 = off
    amp: bool = True  # mixed precision, used only on CUDA
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 2
    checkpoint_period: int = 500
    eval_period: int = 500  # 0 = evaluate only at the end
    log_period: int = 20
    # model
    backbone: str = "resnet18"  # torchvision: resnet18/34/50, mobilenet_v3; detectron2: R50...
    norm: str = "GN"  # GN | BN | FrozenBN (random init needs GN or BN)
    trainable_layers: int = 5
    fpn_channels: int = 256  # FPN width (64 is plenty for a CPU model)
    box_head_dim: int = 1024  # width of the two-layer box head (Detectron2: ROI_BOX_HEAD.FC_DIM)
    init_weights: str | None = None  # a local .pt/.pth state dict; nothing is downloaded
    # Fixed per-band {"mean": [...], "std": [...]} in reflectance; None: estimated from the
    # training chips. Fine-tuning a bundle keeps the bundle's (its weights expect them).
    normalization: dict[str, list[float]] | None = None
    anchor_sizes: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])  # per FPN level
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_pre_nms_topk_train: int = 2000
    rpn_post_nms_topk_train: int = 1000
    rpn_pre_nms_topk_test: int = 1000
    rpn_post_nms_topk_test: int = 500
    rpn_batch_size_per_image: int = 256
    roi_batch_size_per_image: int = 256
    detections_per_image: int = 100
    input_scale: float = 1.0  # resize chips by this before the network (2.0 helps 2-4 px sites)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    engine_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def optional_indices(self) -> list[int]:
        """Positions of ``optional_bands`` in ``bands``."""
        return [self.bands.index(b) for b in self.optional_bands]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        values = _coerce(cls, dict(values))
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"unknown training config key(s): {sorted(unknown)}"
            )
        aug = values.pop("augment", None) or {}
        if not isinstance(aug, dict):
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, "augment must be a mapping")
        bad = set(aug) - {f.name for f in dataclasses.fields(AugmentConfig)}
        if bad:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"unknown augment key(s): {sorted(bad)}")
        cfg = cls(**values, augment=AugmentConfig(**_coerce(AugmentConfig, aug)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def bad(msg: str) -> AsmSpotterError:
            return AsmSpotterError(Reason.INVALID_ARGUMENT, f"training config: {msg}")

        if self.batch_size < 1 or self.max_iter < 1 and self.epochs < 1:
            raise bad("batch_size and max_iter (or epochs) must be >= 1")
        from training.engines.base import ENGINES

        if self.engine not in ENGINES:
            raise bad(f"engine must be one of {sorted(ENGINES)}, not {self.engine!r}")
        if not self.bands:
            raise bad("bands must not be empty")
        if not self.lr > 0:
            raise bad("lr must be > 0")
        if self.schedule not in ("multistep", "cosine"):
            raise bad(f"schedule must be multistep or cosine, not {self.schedule!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise bad(f"optimizer must be sgd or adamw, not {self.optimizer!r}")
        if self.norm not in ("GN", "BN", "FrozenBN"):
            raise bad(f"norm must be GN, BN or FrozenBN, not {self.norm!r}")
        if not set(self.optional_bands) < set(self.bands):
            raise bad("optional_bands must be some, not all, of bands")
        if not 0 <= self.augment.optional_dropout <= 1:
            raise bad("augment.optional_dropout must be in [0, 1]")
        if self.augment.optional_dropout > 0 and not self.optional_bands:
            raise bad("augment.optional_dropout needs optional_bands")
        if self.oversample_positives < 1:
            raise bad("oversample_positives must be >= 1")
        if self.chip_size < 32:
            raise bad("chip_size must be >= 32")
        if self.input_scale <= 0:
            raise bad("input_scale must be > 0")
        if self.normalization is not None:
            norm = self.normalization
            if not isinstance(norm, dict) or any(
                len(norm.get(k) or []) != len(self.bands) for k in ("mean", "std")
            ):
                raise bad("normalization needs a mean and a std per band")


def _coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Numbers given as strings (YAML reads ``1e-3`` as text) -> the field's number type."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        kind = hints.get(key)
        try:
            if kind is float and isinstance(value, str | int) and not isinstance(value, bool):
                values[key] = float(value)
            elif kind is int and isinstance(value, str):
                values[key] = int(value)
        except ValueError as exc:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"training config: {key} must be a number, not {value!r}"
            ) from exc
        if kind in (float, int) and not isinstance(values[key], int | float):
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"training config: {key} must be a number, not {value!r}"
            )
    return values


def _set_path(tree: dict[str, Any], key: str, raw: str) -> None:
    """``a.b=value``: parse value as YAML (numbers, booleans, lists) and set it in the tree."""
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"override {key}: {part} is no mapping")
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """``base`` (e.g. a bundle's config), then a config file (YAML or JSON; missing keys keep
    what came before), then ``key=value`` overrides."""
    tree: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise AsmSpotterError(Reason.FILE_NOT_FOUND, "no such config file", str(path))
        text = path.read_text()
        try:
            loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"config is not valid YAML/JSON ({exc})", str(path)
            ) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, "config must be a mapping", str(path))
        tree.update(loaded or {})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"override {item!r} is not of the form key=value"
            )
        _set_path(tree, key.strip(), raw.strip())
    try:
        return TrainConfig.from_dict(tree)
    except TypeError as exc:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"training config: {exc}") from exc
