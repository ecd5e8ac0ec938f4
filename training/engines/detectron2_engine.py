"""The Detectron2 engine (the design card's): N-band Mask R-CNN R-FPN with Detectron2's trainer.

``DefaultTrainer`` with the N-band mapper (``detectron2_data``) and the shared resumable sampler
(``training.sampling``, positives oversampled as configured), hooks for
periodic checkpoints (``DetectionCheckpointer``), ``COCOEvaluator`` on the validation split and the
best checkpoint by segm AP, AMP on CUDA, gradient clipping (``SOLVER.CLIP_GRADIENTS``) and
Detectron2's own ``launch`` over ``num_gpus`` GPUs: this engine is its own launcher (never run it
under torchrun). Checkpoints carry the engine contract's
``config``/``stats``/``metrics`` next to Detectron2's own entries. Inference calls the model
directly (``DefaultPredictor`` handles 1 or 3 channels only).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, HookBase, hooks, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer, get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter
from detectron2.utils.logger import setup_logger

from imagery import feedback
from imagery.errors import AsmSpotterError, Reason
from training.config import TrainConfig
from training.data import TrainData
from training.devices import resolve_device
from training.engines.base import (
    SCORE_FLOOR,
    DetectionModel,
    Engine,
    Instances,
    prepare_input,
    score_floor,
)
from training.engines.detectron2_config import build_config
from training.engines.detectron2_data import (
    EpochDataset,
    NBandMapper,
    dataset_dicts,
    register,
    rescale,
    write_ground_truth,
)
from training.engines.detectron2_eval import ObjectF1Evaluator
from training.sampling import epoch_pool, run_sampler

TRAIN_SET = "asmspotter_train"
VAL_SET = "asmspotter_val"
BEST = "model_best.pth"
FINAL = "model_final.pth"
METRICS = "metrics.json"  # Detectron2's JSONWriter log (one JSON object per line)
BEST_METRIC = "segm/AP"


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """COCOEvaluator results (percent) -> the project's metrics keys (fractions), plus raw; the
    object-level counts pass through (``objects``, ``f1``)."""

    def frac(task: str, key: str) -> float:
        value = float(results.get(task, {}).get(key, float("nan")))
        return max(value / 100.0, 0.0) if math.isfinite(value) else 0.0

    raw = {
        task: {k: float(v) if math.isfinite(float(v)) else None for k, v in values.items()}
        for task, values in results.items()
        if task in ("bbox", "segm")
    }
    objects = results.get("objects", {})
    return {
        "bbox": {"AP": frac("bbox", "AP"), "AP50": frac("bbox", "AP50")},
        "segm": {"AP": frac("segm", "AP"), "AP50": frac("segm", "AP50")},
        "mask_AP": frac("segm", "AP"),
        "mask_AP50": frac("segm", "AP50"),
        "bbox_AP": frac("bbox", "AP"),
        "bbox_AP50": frac("bbox", "AP50"),
        "objects": {
            "iou_threshold": 0.5,
            "score_threshold": 0.5,
            "per_class": {k: v for k, v in objects.items() if k != "all"},
            "all": objects.get("all", {}),
        },
        "f1": float(objects.get("all", {}).get("f1", 0.0)),
        "coco_evaluator": raw,
    }


class BundleCheckpointer(DetectionCheckpointer):
    """Every checkpoint also carries ``config``, ``stats``, ``engine`` and the latest ``metrics``
    (the engine contract in ``training.engines.base``)."""

    def __init__(self, model: torch.nn.Module, save_dir: str, extra: dict, **checkpointables: Any):
        super().__init__(model, save_dir, **checkpointables)
        self.extra = extra
        self.metrics: dict[str, Any] = {}
        self._tag = True

    def save(self, name: str, **kwargs: Any) -> None:
        super().save(name, **self.extra, metrics=self.metrics, **kwargs)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if self._tag:
            super().tag_last_checkpoint(last_filename_basename)


class UntaggedSaver:
    """Saves through a ``BundleCheckpointer`` without moving ``last_checkpoint`` (which a resume
    follows): the best checkpoint may hold older weights than the latest one."""

    def __init__(self, checkpointer: BundleCheckpointer) -> None:
        self.checkpointer = checkpointer

    def save(self, name: str, **kwargs: Any) -> None:
        self.checkpointer._tag = False
        try:
            self.checkpointer.save(name, **kwargs)
        finally:
            self.checkpointer._tag = True


class BestCheckpointer(hooks.BestCheckpointer):
    """Detectron2's best-by-metric hook whose record survives a resume."""

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_metric = state.get("best_metric")
        self.best_iter = state.get("best_iter")


class ProgressBar(HookBase):
    """A tqdm bar over the iterations with the smoothed total loss."""

    def before_train(self) -> None:
        self.bar = feedback.bar(total=self.trainer.max_iter, desc="train")
        self.bar.update(self.trainer.start_iter)

    def after_step(self) -> None:
        self.bar.update(1)
        history = self.trainer.storage.histories().get("total_loss")
        if history is not None:
            self.bar.set_postfix(loss=f"{history.median(20):.3f}", refresh=False)

    def after_train(self) -> None:
        self.bar.close()


class NBandTrainer(DefaultTrainer):
    """``DefaultTrainer`` over the N-band chips of a ``TrainData``."""

    def __init__(self, d2cfg: CfgNode, cfg: TrainConfig, data: TrainData, start_iter: int) -> None:
        self.train_cfg, self.data, self.sampler_start = cfg, data, start_iter
        super().__init__(d2cfg)
        # replace the plain checkpointer by one that writes the engine contract's entries
        self.checkpointer = BundleCheckpointer(
            self._trainer.model,
            d2cfg.OUTPUT_DIR,
            {
                "engine": "detectron2",
                "config": cfg.to_dict(),
                "stats": dataclasses.asdict(data.stats),
                "sources": dict(data.sources),
            },
            trainer=weakref.proxy(self),
        )
        self._hooks = []
        self.register_hooks(self.build_hooks())

    def build_optimizer(self, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        if self.train_cfg.optimizer != "adamw":
            return build_optimizer(cfg, model)
        params = get_default_optimizer_params(
            model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )

    def build_train_loader(self, cfg: CfgNode) -> Any:
        cfg_t = self.train_cfg
        dicts = dataset_dicts(self.data.train)
        mapper = NBandMapper(
            self.data.train,
            self.data.stats,
            cfg_t.augment,
            cfg_t.seed,
            cfg_t.input_scale,
            optional=cfg_t.optional_indices,
        )
        sampler = run_sampler(
            self.data.train, cfg_t, self.sampler_start, comm.get_rank(), comm.get_world_size()
        )
        return build_detection_train_loader(
            EpochDataset(dicts, mapper),
            mapper=None,
            sampler=sampler,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=False,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    def evaluate(self) -> dict[str, Any]:
        """COCOEvaluator on the validation split; results go to storage (segm/AP, ...)."""
        if self.data.val is None:
            return {}
        cfg_t = self.train_cfg
        mapper = NBandMapper(
            self.data.val, self.data.stats, None, input_scale=cfg_t.input_scale, is_train=False
        )
        loader = build_detection_test_loader(
            dataset_dicts(self.data.val), mapper=mapper, num_workers=0
        )
        evaluator = DatasetEvaluators(
            [
                COCOEvaluator(VAL_SET, tasks=("bbox", "segm"), distributed=True),
                ObjectF1Evaluator(self.data.val.classes),
            ]
        )
        model = self.model
        was_training = model.training
        try:
            results = inference_on_dataset(model, loader, evaluator) or {}
        finally:
            model.train(was_training)
        if comm.is_main_process() and results:
            self.checkpointer.metrics = summarize(results)
        return results

    def build_hooks(self) -> list[HookBase]:
        cfg = self.cfg
        if not isinstance(getattr(self, "checkpointer", None), BundleCheckpointer):
            return []  # DefaultTrainer.__init__ calls this before our checkpointer exists
        main = comm.is_main_process()
        ret: list[HookBase] = [hooks.IterationTimer(), hooks.LRScheduler()]
        if main:
            ret.append(
                hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, 2)
            )
        if self.data.val is not None:
            ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, self.evaluate))
            if main:
                saver = UntaggedSaver(self.checkpointer)
                ret.append(BestCheckpointer(cfg.TEST.EVAL_PERIOD, saver, BEST_METRIC))
        if main:
            out = Path(cfg.OUTPUT_DIR)
            writers = [CommonMetricPrinter(self.max_iter), JSONWriter(str(out / METRICS))]
            ret.append(hooks.PeriodicWriter(writers, period=self.train_cfg.log_period))
            ret.append(ProgressBar())
        return ret


def read_start_iter(out_dir: Path) -> int:
    """The iteration a resume starts at: one past the last checkpoint's (0 without one)."""
    pointer = out_dir / "last_checkpoint"
    if not pointer.is_file():
        return 0
    ckpt = out_dir / pointer.read_text().strip()
    if not ckpt.is_file():
        return 0
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(state.get("iteration", -1)) + 1


def _train_worker(cfg: TrainConfig, data: TrainData, out_dir: Path, resume: bool, device: str):
    """One training process (all of them under ``launch``)."""
    setup_logger(str(out_dir), distributed_rank=comm.get_rank(), name="detectron2")
    world = comm.get_world_size()
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{comm.get_local_rank()}"
    val_gt = None
    if data.val is not None:
        val_gt = out_dir / "val_ground_truth.json"
        if comm.is_main_process():
            write_ground_truth(data.val, val_gt)
        comm.synchronize()
    register(TRAIN_SET, data.train)
    if data.val is not None:
        register(VAL_SET, data.val, val_gt)
    n_train = len(epoch_pool(data.train, cfg.oversample_positives))
    d2cfg = build_config(cfg, device, str(out_dir), world, n_train=n_train).clone()
    d2cfg.defrost()
    d2cfg.DATASETS.TRAIN = (TRAIN_SET,)
    d2cfg.DATASETS.TEST = (VAL_SET,) if data.val is not None else ()
    d2cfg.freeze()
    if comm.is_main_process():
        if not resume:  # a fresh run: nothing stale (log, resume pointer, best) from an earlier one
            for stale in (METRICS, "last_checkpoint", BEST):
                (out_dir / stale).unlink(missing_ok=True)
        (out_dir / "detectron2_config.yaml").write_text(d2cfg.dump())
    start_iter = read_start_iter(out_dir) if resume else 0
    torch.manual_seed(cfg.seed + comm.get_rank())
    trainer = NBandTrainer(d2cfg, cfg, data, start_iter)
    trainer.resume_or_load(resume=resume)
    try:
        trainer.train()
    except FloatingPointError as exc:
        raise AsmSpotterError(
            Reason.TRAINING_DIVERGED,
            f"non-finite loss ({exc}); lower lr, raise warmup_iters or check the data",
        ) from exc


class Detectron2DetectionModel(DetectionModel):
    """A Detectron2 Mask R-CNN called directly on N-band batches."""

    def __init__(
        self,
        model: torch.nn.Module,
        info: dict,
        device: str,
        input_scale: float = 1.0,
        batch_size: int = 8,
    ) -> None:
        self.model = model.to(device).eval()
        self.info = info
        self.device = device
        self.input_scale = input_scale
        self.batch_size = batch_size

    @torch.inference_mode()
    def predict(self, images: np.ndarray, score_threshold: float = SCORE_FLOOR) -> list[Instances]:
        x = prepare_input(images, self.info)
        h, w = np.shape(images)[2:]
        out: list[Instances] = []
        for start in range(0, len(x), self.batch_size):
            for found in self._predict_batch(x[start : start + self.batch_size]):
                out.append(found.above(score_threshold).cropped(h, w))
        return out

    def _predict_batch(self, prepared: np.ndarray) -> list[Instances]:
        h, w = prepared.shape[2:]
        inputs = [
            {
                "image": rescale(torch.from_numpy(img), self.input_scale),
                "height": h,
                "width": w,
            }
            for img in prepared
        ]
        out = []
        for result in self.model(inputs):
            inst = result["instances"].to("cpu")
            masks = (
                inst.pred_masks.numpy().astype(bool)
                if inst.has("pred_masks")
                else np.zeros((len(inst), h, w), bool)
            )
            out.append(
                Instances(
                    masks=masks,
                    scores=inst.scores.float().numpy(),
                    classes=inst.pred_classes.numpy().astype(np.int64),
                    boxes=inst.pred_boxes.tensor.float().numpy().reshape(-1, 4),
                )
            )
        return out


class Detectron2Engine(Engine):
    name = "detectron2"
    honours = TrainConfig.field_names()
    launches_itself = True

    def train(
        self, cfg: TrainConfig, data: TrainData, out_dir: Path, resume: bool, num_gpus: int = 1
    ) -> Path:
        self.check_config(cfg)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                "the detectron2 engine launches its own processes; run `asmspotter train "
                "--num-gpus N` directly, not under torchrun",
            )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        device = resolve_device(cfg.device)
        gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        if num_gpus > max(gpus, 1):
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"--num-gpus {num_gpus} but {gpus} CUDA device(s) are available to device "
                f"{device!r}",
            )
        launch(
            _train_worker,
            num_gpus,
            dist_url="auto",
            args=(cfg, data, out_dir, resume, device),
        )
        best = out_dir / BEST
        return best if best.is_file() else out_dir / FINAL

    def export_weights(self, checkpoint: Path, dest: Path, half: bool = True) -> dict:
        extra = super().export_weights(checkpoint, dest, half)
        extra.pop("trainer", None)  # Detectron2's trainer/hook state: not part of a bundle
        return extra

    def load(self, bundle_dir: Path, info: dict, device: str) -> DetectionModel:
        cfg = TrainConfig.from_dict(info["config"])
        cfg.init_weights = None
        d2cfg = build_config(cfg, device, score_floor=score_floor(info))
        model = build_model(d2cfg)
        weights = Path(bundle_dir) / info["weights"]
        if not weights.is_file():
            raise AsmSpotterError(Reason.BUNDLE_INVALID, "weights file missing", str(weights))
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except (RuntimeError, pickle.UnpicklingError) as exc:
            raise AsmSpotterError(
                Reason.BUNDLE_INVALID,
                f"weights do not fit the bundle's detectron2 config ({str(exc)[:200]})",
                str(weights),
            ) from exc
        return Detectron2DetectionModel(model, info, device, cfg.input_scale)
