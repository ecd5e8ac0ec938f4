"""The engine interface: what training, evaluation, bundles and the service rely on.

An ``Engine`` trains a Mask R-CNN from a ``TrainConfig`` and a ``TrainData`` and loads a bundle as
a ``DetectionModel``; a ``DetectionModel`` turns reflectance chips into numpy ``Instances``.
Engines are registered by name and imported lazily, so importing this module needs neither
torchvision's detection models nor Detectron2.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from imagery.errors import AsmSpotterError, Reason

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import TrainData


# The lowest score any model call reports. Engines build their networks with this threshold once
# (it is never written again): a call's own ``score_threshold`` filters after the forward pass, so
# concurrent calls with different thresholds cannot change each other's results.
# Detectron2 0.6 scripts a few helpers with torch.jit.script, deprecated in torch 2.x: not the
# user's concern (it printed two warning lines on every Detectron2 model load).
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)

SCORE_FLOOR = 0.05

DEFAULT_MIN_SCORE = 0.5  # for bundles that name no default threshold of their own


def default_threshold(info: dict) -> float:
    """The score a site needs when the caller names none: the bundle's ``default_threshold``
    (chosen from its calibration), else ``DEFAULT_MIN_SCORE``."""
    return float(info.get("default_threshold", DEFAULT_MIN_SCORE))


def optional_bands(info: dict) -> tuple[str, ...]:
    """The bundle's bands that input may lack (read as nodata then; ``TrainConfig``)."""
    return tuple(info.get("optional_bands") or ())


def score_floor(info: dict) -> float:
    """The lowest score a loaded network reports: ``SCORE_FLOOR``, or lower where the bundle's
    site scorer wants weaker detections to rescore (``verifier.min_detector_score``)."""
    wanted = (info.get("verifier") or {}).get("min_detector_score", SCORE_FLOOR)
    return min(SCORE_FLOOR, float(wanted))


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

    def select(self, keep: np.ndarray) -> Instances:
        """The instances where ``keep`` (bool [K]) is set."""
        return Instances(self.masks[keep], self.scores[keep], self.classes[keep], self.boxes[keep])

    def above(self, score_threshold: float) -> Instances:
        """The instances scoring at least ``score_threshold``."""
        return self.select(self.scores >= score_threshold)

    def cropped(self, height: int, width: int) -> Instances:
        """Padding removed: masks cut to ``height`` x ``width``, boxes clipped to it."""
        boxes = self.boxes.copy()
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
        return Instances(self.masks[:, :height, :width], self.scores, self.classes, boxes)


def check_images(images: np.ndarray, n_bands: int) -> np.ndarray:
    """The shape rule of every model input: float32 [N,C,H,W] with exactly the model's bands."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"images must be [N,C,H,W], got shape {images.shape}"
        )
    if images.shape[1] != n_bands:
        raise AsmSpotterError(
            Reason.BAND_MISMATCH,
            f"images have {images.shape[1]} bands but the model expects {n_bands}",
        )
    return images


def pad_nodata(images: np.ndarray, size: int) -> np.ndarray:
    """[N,C,h,w] -> [N,C,max(h,size),max(w,size)] float32; the added pixels are nodata (NaN)."""
    images = np.asarray(images, dtype=np.float32)
    h, w = images.shape[2:]
    if h >= size and w >= size:
        return images
    out = np.full((*images.shape[:2], max(h, size), max(w, size)), np.nan, np.float32)
    out[:, :, :h, :w] = images
    return out


def input_size(height: int, width: int, chip_size: int) -> int:
    """The side a model input of (height, width) is padded to: the bundle's ``chip_size``, or for
    a smaller input (a chip, a small scene) the next multiple of 32 (the backbones' stride), so a
    48 px chip is not run as a 256 px one."""
    side = max(height, width)
    if not chip_size or side >= chip_size:
        return chip_size
    return min(chip_size, -(-side // 32) * 32)


def normalize(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Reflectance [N,C,H,W] -> zero-mean unit-std float32; NaN (nodata) -> 0 after normalising,
    i.e. nodata takes the band's mean."""
    images = check_images(images, len(mean))
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    out = (images - m) / s
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def prepare_input(images: np.ndarray, info: dict) -> np.ndarray:
    """THE input preparation of every model call (service, evaluation, labelling): reflectance
    [N,C,h,w] with NaN = nodata -> normalised float32 padded (bottom/right) to the bundle's
    ``chip_size`` (``input_size``: smaller inputs to a multiple of 32); nodata and padding are 0,
    the band mean. ``predict`` crops its output back
    to (h, w) with ``Instances.cropped``."""
    norm = info["normalization"]
    images = check_images(images, len(norm["mean"]))
    size = input_size(*images.shape[2:], int(info.get("chip_size") or 0))
    padded = pad_nodata(images, size)
    return normalize(padded, norm["mean"], norm["std"])


class DetectionModel(ABC):
    """What the service, evaluation and labelling call."""

    info: dict  # parsed bundle.json
    device: str

    @abstractmethod
    def predict(self, images: np.ndarray, score_threshold: float = SCORE_FLOOR) -> list[Instances]:
        """images float32 [N,C,H,W] in physical units (reflectance), NaN = nodata; the
        instances scoring at least ``score_threshold`` (never below ``SCORE_FLOOR``).

        Stateless: prepares the input with ``prepare_input``, runs the network (built with
        ``SCORE_FLOOR``) and filters per call; nothing is written onto the shared network.
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
    # The TrainConfig fields this engine acts on; any other field set to a non-default value is
    # refused (``check_config``) rather than silently ignored.
    honours: ClassVar[frozenset[str]]
    # True: the engine starts its own processes for several GPUs (never under torchrun); False:
    # ``asmspotter train --num-gpus N`` starts it under torchrun.
    launches_itself: ClassVar[bool] = False

    @classmethod
    def check_config(cls, cfg: TrainConfig) -> None:
        """INVALID_ARGUMENT for every field set away from its default that this engine ignores."""
        from training.config import TrainConfig

        default = TrainConfig()
        ignored = [
            f"{f.name}={getattr(cfg, f.name)!r}"
            for f in dataclasses.fields(cfg)
            if f.name not in cls.honours and getattr(cfg, f.name) != getattr(default, f.name)
        ]
        if ignored:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"the {cls.name} engine does not support {', '.join(ignored)}; remove "
                f"{'it' if len(ignored) == 1 else 'them'} or choose another engine",
            )

    @abstractmethod
    def train(
        self, cfg: TrainConfig, data: TrainData, out_dir: Path, resume: bool, num_gpus: int = 1
    ) -> Path:
        """Train, write checkpoints under out_dir, return the best weights file. ``num_gpus`` is
        used only by an engine that ``launches_itself``. Calls ``check_config`` first."""

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
