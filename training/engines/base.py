"""The engine interface: what training, evaluation, bundles and the service rely on.

An ``Engine`` trains a Mask R-CNN from a ``TrainConfig`` and a ``TrainData`` and loads a bundle as
a ``DetectionModel``; a ``DetectionModel`` turns reflectance chips into numpy ``Instances``.
Engines are registered by name and imported lazily, so importing this module needs neither
torchvision's detection models nor Detectron2.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from imagery.errors import AsmSpotterError, Reason

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import TrainData


@dataclass
class Instances:
    """One image's detections, numpy only."""

    masks: np.ndarray  # bool [K,H,W]
    scores: np.ndarray  # float32 [K]
    classes: np.ndarray  # int64 [K], 0-based index into info["classes"]
    boxes: np.ndarray  # float32 [K,4] xyxy pixels

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, height: int, width: int) -> Instances:
        return cls(
            masks=np.zeros((0, height, width), bool),
            scores=np.zeros(0, np.float32),
            classes=np.zeros(0, np.int64),
            boxes=np.zeros((0, 4), np.float32),
        )


def normalize(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Reflectance [N,C,H,W] -> zero-mean unit-std float32; NaN (nodata) -> 0 after normalising."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"images must be [N,C,H,W], got shape {images.shape}"
        )
    if images.shape[1] != len(mean):
        raise AsmSpotterError(
            Reason.BAND_MISMATCH,
            f"images have {images.shape[1]} bands but the model expects {len(mean)}",
        )
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    out = (images - m) / s
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


class DetectionModel(ABC):
    """What the service and evaluation call."""

    info: dict  # parsed bundle.json
    device: str

    @abstractmethod
    def predict(self, images: np.ndarray, score_threshold: float = 0.05) -> list[Instances]:
        """images float32 [N,C,H,W] in physical units (reflectance), NaN = nodata.

        Normalises with info["normalization"] mean/std inside (NaN -> 0 after normalising).
        """

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def bands(self) -> list[str]:
        return list(self.info["bands"])


class Engine(ABC):
    """Checkpoint contract: the files ``train`` writes (and returns) are ``torch.save`` dicts with
    at least ``model`` (state dict), ``config`` (``TrainConfig.to_dict()``), ``stats``
    (``{"mean": [...], "std": [...]}`` reflectance), ``iteration`` and ``metrics`` (dict, may be
    empty). ``training.bundle.export_bundle`` builds a bundle from any such file; ``load`` rebuilds
    the network from ``TrainConfig.from_dict(info["config"])`` and reads ``info["weights"]``
    (a plain state dict, possibly fp16) from ``bundle_dir``.
    """

    name: ClassVar[str]

    @abstractmethod
    def train(self, cfg: TrainConfig, data: TrainData, out_dir: Path, resume: bool) -> Path:
        """Train, write checkpoints under out_dir, return the best weights file."""

    @abstractmethod
    def load(self, bundle_dir: Path, info: dict, device: str) -> DetectionModel:
        """Load a bundle's weights (info = parsed bundle.json) as a ready DetectionModel."""

    def export_weights(self, checkpoint: Path, dest: Path, half: bool = True) -> dict:
        """Write the checkpoint's model state dict to ``dest`` (fp16 when ``half``); return the
        checkpoint's other entries (config, stats, iteration, metrics)."""
        import torch

        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise AsmSpotterError(
                Reason.BUNDLE_INVALID, "not a training checkpoint (no 'model')", str(checkpoint)
            )
        state = ckpt["model"]
        if half:
            state = {
                k: v.half() if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in state.items()
            }
        torch.save(state, dest)
        return {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler")}


# name -> "module:Class"; imported only when asked for.
ENGINES: dict[str, str] = {
    "torchvision": "training.engines.torchvision_engine:TorchvisionEngine",
    "detectron2": "training.engines.detectron2_engine:Detectron2Engine",
}


def get_engine(name: str) -> Engine:
    """The registered engine ``name``; BUNDLE_INVALID/INVALID_ARGUMENT when unknown or missing."""
    target = ENGINES.get(name)
    if target is None:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"unknown engine {name!r}; choose one of {sorted(ENGINES)}"
        )
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"engine {name!r} is not installed ({exc.name} missing); "
            "see the README's set-up (third_party/detectron2/install.sh for detectron2)",
        ) from exc
    return getattr(module, cls_name)()
