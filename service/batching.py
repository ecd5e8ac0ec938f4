"""Model execution: windows from any number of requests run in shared batches.

``BatchRunner`` owns the model on one or more worker threads. Requests ``submit`` stacks of
windows and get a ``Future``; a worker packs queued stacks into batches of up to ``max_batch``
windows, waiting at most ``max_wait_s`` for more to arrive (dynamic batching), and runs them under
autocast (fp16/bf16) on a GPU. Cancelled futures are skipped. Torch is imported lazily, only when
autocast is wanted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class Model(Protocol):
    """``training.engines.base.DetectionModel``: what the service needs of a model."""

    info: dict
    device: str

    def predict(self, images: np.ndarray, score_threshold: float = 0.05) -> list[Any]: ...


@dataclass
class _Job:
    images: np.ndarray
    future: Future
    score_threshold: float


class BatchRunner:
    def __init__(
        self,
        model: Model,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        precision: str = "auto",
        score_floor: float = 0.05,
        on_batch: Callable[[int, float], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.score_floor = score_floor
        self.on_batch = on_batch
        self.precision = resolve_precision(precision, getattr(model, "device", "cpu"))
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        # Several workers overlap one batch's Python-side work (pre/post-processing) with another
        # batch's GPU kernels; on a CPU one worker (using all cores) is best.
        self._threads = [
            threading.Thread(target=self._loop, name=f"batch-runner-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, images: np.ndarray, score_threshold: float | None = None) -> Future:
        """Run the model on float32 [N,C,H,W] reflectance; the future gives N ``Instances``
        with scores >= ``score_threshold`` (default ``score_floor``; a shared batch uses the
        lowest threshold of its jobs)."""
        future: Future = Future()
        threshold = self.score_floor if score_threshold is None else score_threshold
        self._queue.put(_Job(np.ascontiguousarray(images, np.float32), future, threshold))
        return future

    def run(self, images: np.ndarray, score_threshold: float | None = None) -> list[Any]:
        return self.submit(images, score_threshold).result()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, count = [first], len(first.images)
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # close after this batch
                break
            if job.images.shape[1:] != first.images.shape[1:] or count + len(job.images) > (
                self.max_batch
            ):
                self._queue.put(job)  # goes into the next batch (order across requests may vary)
                break
            jobs.append(job)
            count += len(job.images)
        return jobs

    def _loop(self) -> None:
        while (jobs := self._take()) is not None:
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            batch = np.concatenate([j.images for j in jobs]) if len(jobs) > 1 else jobs[0].images
            start = time.perf_counter()
            try:
                threshold = min(j.score_threshold for j in jobs)
                with self._autocast():
                    results = self.model.predict(batch, score_threshold=threshold)
            except BaseException as exc:  # hand every error to the requests that asked
                log.exception("model failed on a batch of %d windows", len(batch))
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            if self.on_batch:
                self.on_batch(len(batch), time.perf_counter() - start)
            i = 0
            for j in jobs:
                j.future.set_result(results[i : i + len(j.images)])
                i += len(j.images)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision)


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast for fp16/bf16 on CUDA; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU."""
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {precision!r}")
    if not str(device).startswith("cuda"):
        return "fp32"
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
