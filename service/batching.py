"""Model execution: windows from any number of requests run in shared batches.

``BatchRunner`` owns the model on one or more worker threads. Requests ``submit`` stacks of
windows and get a ``Future``; a worker packs queued stacks into batches of up to ``max_batch``
windows, waiting at most ``max_wait_s`` for more to arrive (dynamic batching), and runs them under
autocast (fp16/bf16) on a GPU. Cancelled futures are skipped. Model calls are stateless: the
threshold is an argument of ``predict`` (the lowest of the batch's requests), never model state,
and each request's windows are filtered by its own threshold afterwards, so concurrent workers
never change each other's results. Torch is imported lazily,
only when autocast is wanted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class Model(Protocol):
    """``training.engines.base.DetectionModel``: what the service needs of a model."""

    info: dict
    device: str

    def predict(self, images: np.ndarray, score_threshold: float = ...) -> list[Any]:
        """Instances per image with scores >= score_threshold; no shared state is written."""


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
        on_batch: Callable[[int, float], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
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

    def submit(self, images: np.ndarray, score_threshold: float = 0.0) -> Future:
        """Run the model on float32 [N,C,H,W] reflectance; the future gives N ``Instances``
        with scores >= ``score_threshold`` (and the model's floor)."""
        future: Future = Future()
        self._queue.put(_Job(np.ascontiguousarray(images, np.float32), future, score_threshold))
        return future

    def run(self, images: np.ndarray, score_threshold: float = 0.0) -> list[Any]:
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
                lowest = min(j.score_threshold for j in jobs)  # an argument, never model state
                with self._autocast():
                    results = self.model.predict(batch, score_threshold=lowest)
            except BaseException as exc:  # hand every error to the requests that asked
                log.exception("model failed on a batch of %d windows", len(batch))
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            if self.on_batch:
                self.on_batch(len(batch), time.perf_counter() - start)
            i = 0
            for j in jobs:  # each request gets its own threshold
                share = results[i : i + len(j.images)]
                j.future.set_result([r.above(j.score_threshold) for r in share])
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
    """'auto' -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU. fp16/bf16 asked
    for on a CPU are refused (they were once run as fp32 without a word)."""
    from imagery.errors import AsmSpotterError, Reason

    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"precision must be auto, fp32, fp16 or bf16, not {precision!r}",
        )
    if not str(device).startswith("cuda"):
        if precision in ("fp16", "bf16"):
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"precision {precision} needs a CUDA device; on {device} the model runs in fp32 "
                "(use --precision auto or fp32)",
            )
        return "fp32"
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class WindowBatches:
    """Stage 2 of the data path: source windows -> (window, its ``Instances`` or None) in order.

    Windows are stacked ``max_batch`` at a time (edge windows padded with nodata to the chip
    size) and submitted to the shared ``BatchRunner``; the next batch is read while the model runs
    the current one. ``cancelled`` is checked before every window; a cancelled request's queued
    batches are withdrawn and CANCELLED is raised.
    """

    def __init__(self, runner: BatchRunner, chip_size: int, max_batch: int) -> None:
        self.runner, self.chip_size, self.max_batch = runner, chip_size, max_batch

    def run(
        self,
        windows: Iterable[Any],
        score_threshold: float,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[Any, Any]]:
        """``windows`` are ``service.windows.SourceWindow``s (``pixels`` None: not run)."""
        from service.errors import ServiceError, ServiceReason

        pending: list[tuple[list[Any], Future]] = []
        batch: list[Any] = []
        try:
            for item in windows:
                if cancelled and cancelled():
                    for _, future in pending:
                        future.cancel()
                    raise ServiceError(ServiceReason.CANCELLED, "the request was cancelled")
                batch.append(item)
                if len(batch) == self.max_batch:
                    pending.append((batch, self._submit(batch, score_threshold)))
                    batch = []
                    while len(pending) > 1:  # read ahead while the model runs
                        yield from self._finish(*pending.pop(0))
            if batch:
                pending.append((batch, self._submit(batch, score_threshold)))
            while pending:
                yield from self._finish(*pending.pop(0))
        finally:
            for _, future in pending:
                future.cancel()

    def _submit(self, batch: list[Any], score_threshold: float) -> Future | None:
        """The model's future for the batch's windows that have pixels (None: no such window)."""
        arrays = [item.pixels for item in batch if item.pixels is not None]
        if not arrays:
            return None
        from training.engines.base import input_size, pad_nodata  # numpy only

        # edge windows are padded with nodata, as prepare_input pads every model input
        size = max(input_size(*a.shape[1:], self.chip_size) for a in arrays)
        stack = np.concatenate([pad_nodata(a[None], size) for a in arrays])
        return self.runner.submit(stack, score_threshold)

    @staticmethod
    def _finish(batch: list[Any], future: Future | None) -> Iterator[tuple[Any, Any]]:
        results = iter(future.result() if future is not None else ())
        for item in batch:
            yield item, (next(results) if item.pixels is not None else None)
