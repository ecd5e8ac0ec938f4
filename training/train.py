"""The flat training loop (torchvision reference style) used by the torchvision engine.

Warm-up then multistep/cosine schedule, AMP on CUDA, gradient clipping, a clear error on a
non-finite loss, ``last.pt`` checkpoints that resume to the same step (the sample order is a
function of seed and epoch), ``best.pt`` by validation mask AP, a tqdm bar and ``metrics.jsonl``.
Multi-GPU: start under ``torchrun --nproc_per_node=N -m training.cli train ...`` (or
``asmspotter train --num-gpus N``); each rank takes its share of every epoch's permutation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from imagery import feedback
from imagery.errors import AsmSpotterError, Reason
from training.config import TrainConfig
from training.data import Sample, TrainData, TrainingView
from training.devices import resolve_device
from training.engines.base import DetectionModel
from training.evaluate import evaluate_model
from training.sampling import epoch_pool, run_sampler

LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"


# ---------------------------------------------------------------- devices, seeds, distribution
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state()}
    state["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators, so a resumed run continues exactly as an uninterrupted one."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---------------------------------------------------------------- data
class TorchChips(Dataset):
    """``TrainingView`` samples as torchvision detection (image, target) pairs.

    Keys are ``(epoch, index)`` pairs from ``training.sampling.RunSampler``: augmentation depends
    on both.
    """

    def __init__(self, view: TrainingView) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, index = key
        return to_torch(self.view.get(index, epoch))


def to_torch(sample: Sample) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    target = {
        "boxes": torch.from_numpy(sample.boxes).float().reshape(-1, 4),
        "labels": torch.from_numpy(sample.classes + 1).long(),  # 0 = background
        "masks": torch.from_numpy(sample.masks.astype(np.uint8)),
        "image_id": torch.tensor(sample.image_id),
    }
    return torch.from_numpy(np.ascontiguousarray(sample.image)), target


def collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


# ---------------------------------------------------------------- optimisation
def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(it: int, cfg: TrainConfig, max_iter: int, steps: list[int]) -> float:
    """Linear warm-up from ``warmup_factor`` then multistep or cosine decay."""
    warm = 1.0
    if it < cfg.warmup_iters:
        alpha = it / cfg.warmup_iters
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(it, max_iter) / max_iter))
    return warm * cfg.gamma ** sum(it >= s for s in steps)


def schedule_lengths(cfg: TrainConfig, n_train: int, world: int) -> tuple[int, int, list[int]]:
    """(iterations per epoch, max_iter, lr steps); ``epochs`` rescales steps to iterations."""
    per_epoch = max(1, math.ceil(math.ceil(n_train / world) / cfg.batch_size))
    if cfg.epochs > 0:
        max_iter = cfg.epochs * per_epoch
        steps = [round(s / cfg.max_iter * max_iter) for s in cfg.steps]
        return per_epoch, max_iter, steps
    return per_epoch, cfg.max_iter, list(cfg.steps)


# ---------------------------------------------------------------- loop
@dataclasses.dataclass
class State:
    iteration: int = 0
    best_metric: float = -1.0
    best_iteration: int = -1
    last_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)


def model_info(cfg: TrainConfig, data: TrainData) -> dict[str, Any]:
    """The bundle.json fields a DetectionModel needs while training."""
    return {
        "engine": cfg.engine,
        "bands": list(cfg.bands),
        "optional_bands": list(cfg.optional_bands),
        "classes": list(cfg.classes),
        "chip_size": cfg.chip_size,
        "normalization": {"mean": data.stats.mean, "std": data.stats.std},
        "config": cfg.to_dict(),
    }


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: TrainData,
        out_dir: Path,
        build_model: Callable[[], nn.Module],
        as_detection_model: Callable[[nn.Module, dict, str], DetectionModel],
    ) -> None:
        self.cfg, self.data, self.out_dir = cfg, data, out_dir
        self.as_detection_model = as_detection_model
        self.rank, self.world, local_rank = distributed_context()
        self.device = torch.device(resolve_device(cfg.device, local_rank))
        seed_everything(cfg.seed)  # the same initial weights on every rank
        self.model = build_model().to(self.device)
        seed_everything(cfg.seed + self.rank)
        self.module = self.model
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # negative-only batches skip the mask head
            )
        self.amp = cfg.amp and self.device.type == "cuda"
        self.optimizer = build_optimizer(self.module, cfg)
        n_epoch = len(epoch_pool(data.train, cfg.oversample_positives))
        self.per_epoch, self.max_iter, steps = schedule_lengths(cfg, n_epoch, self.world)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(it, cfg, self.max_iter, steps)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.view = TrainingView(
            data.train, data.stats, cfg.augment, cfg.seed, cfg.optional_indices
        )
        self.pool = epoch_pool(data.train, cfg.oversample_positives)
        self.info = model_info(cfg, data)
        self.state = State()
        self.main = self.rank == 0

    # -- checkpoints
    def _payload(self, full: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.module.state_dict(),
            "engine": self.cfg.engine,
            "config": self.cfg.to_dict(),
            "stats": dataclasses.asdict(self.data.stats),
            "sources": self.data.sources,
            "iteration": self.state.iteration,
            "metrics": self.state.last_metrics,
        }
        if full:
            payload.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                state=dataclasses.asdict(self.state),
                rng=rng_state(),
            )
        return payload

    def save(self, name: str, full: bool = True) -> Path:
        path = self.out_dir / name
        if self.main:
            tmp = path.with_name(path.name + ".tmp")
            torch.save(self._payload(full), tmp)
            tmp.replace(path)  # never leave a half-written checkpoint behind
        return path

    def resume(self) -> bool:
        path = self.out_dir / LAST
        if not path.is_file():
            return False
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        try:
            self.module.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                "the checkpoint was trained with another model config; resume with the same "
                f"config or choose a new --out ({str(exc).splitlines()[0]})",
                str(path),
            ) from exc
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = State(**ckpt["state"])
        set_rng_state(ckpt["rng"])
        return True

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            with open(self.out_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- evaluation
    def evaluate(self) -> dict[str, Any] | None:
        """Validation metrics (rank 0); keeps ``best.pt`` by mask AP."""
        if self.data.val is None or len(self.data.val) == 0:
            return None
        metrics = None
        if self.main:
            feedback.step(
                f"train: evaluating iteration {self.state.iteration} on {len(self.data.val)} "
                "validation chips"
            )
            detector = self.as_detection_model(self.module, self.info, str(self.device))
            metrics = evaluate_model(detector, self.data.val, batch_size=self.cfg.batch_size)
            self.module.train()
            self.state.last_metrics = metrics
            self.log({"iter": self.state.iteration, "eval": metrics})
            if metrics["mask_AP"] >= self.state.best_metric:  # ties: the later model
                self.state.best_metric = metrics["mask_AP"]
                self.state.best_iteration = self.state.iteration
                self.save(BEST, full=False)
        if self.world > 1:
            dist.barrier()
        return metrics

    # -- training
    def loader(self) -> DataLoader:
        """One loader for the rest of the run, starting at the current iteration's sample."""
        cfg = self.cfg
        sampler = run_sampler(self.data.train, cfg, self.state.iteration, self.rank, self.world)
        return DataLoader(
            TorchChips(self.view),
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),  # spare the global RNG
        )

    def step(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, float]:
        """One optimiser step; the loss values (raises TRAINING_DIVERGED when not finite)."""
        cfg = self.cfg
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        autocast = torch.autocast("cuda", torch.float16) if self.amp else nullcontext()
        with autocast:
            losses = self.model(images, targets)
        loss = sum(losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}
        values = {"loss": float(loss.detach()), **values}
        if not math.isfinite(values["loss"]):
            self.save("diverged.pt", full=False)
            raise AsmSpotterError(
                Reason.TRAINING_DIVERGED,
                f"non-finite loss at iteration {self.state.iteration} ({values}); "
                "lower lr, raise warmup_iters or check the data (NaN in chips?)",
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.state.iteration += 1
        return values

    def train(self, bar: tqdm) -> None:
        cfg = self.cfg
        self.model.train()
        tick, images_done = time.perf_counter(), 0
        batches = iter(self.loader())
        while self.state.iteration < self.max_iter:
            images, targets = next(batches)
            values = self.step(images, targets)
            images_done += len(images)
            it = self.state.iteration
            lr = self.scheduler.get_last_lr()[0]
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
            if it % cfg.log_period == 0 or it == self.max_iter or it == 1:
                now = time.perf_counter()
                epoch = it * cfg.batch_size * self.world / len(self.pool)
                rate = images_done * self.world / (now - tick)
                self.log(
                    {"iter": it, "epoch": round(epoch, 3), "lr": lr, **values, "images_per_s": rate}
                )
                tick, images_done = now, 0
            if cfg.checkpoint_period and it % cfg.checkpoint_period == 0:
                self.save(LAST)
            if cfg.eval_period and it % cfg.eval_period == 0 and it < self.max_iter:
                self.evaluate()

    def fit(self, resume: bool) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.resume():
            self.log({"resumed_at": self.state.iteration})
        elif self.main:
            (self.out_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        bar = feedback.bar(total=self.max_iter, desc="train", enabled=self.main)
        bar.update(self.state.iteration)
        with bar:
            self.train(bar)
        self.save(LAST)
        if self.evaluate() is None:  # no validation set: the last weights are the best
            self.save(BEST, full=False)
        return self.out_dir / BEST


def fit(
    cfg: TrainConfig,
    data: TrainData,
    out_dir: Path,
    resume: bool,
    build_model: Callable[[], nn.Module],
    as_detection_model: Callable[[nn.Module, dict, str], DetectionModel],
) -> Path:
    """Train the model ``build_model()`` makes (torchvision detection conventions: a loss dict in
    train mode) and return the best checkpoint."""
    return Trainer(cfg, data, out_dir, build_model, as_detection_model).fit(resume)
