"""Receiving a DetectScene stream before it may use inference capacity.

A scene's bytes arrive as chunks; until the last one is in, the scene holds no admission slot
(``service/admission.py``), so callers that open streams and stall cannot block other requests.
Receiving is bounded too: at most ``max_uploads`` streams at once (beyond: OVERLOADED at once),
and at most ``idle_s`` seconds between two messages (beyond: STREAM_IDLE).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from imagery.errors import AsmSpotterError, Reason
from service.errors import ServiceError, ServiceReason
from service.tiles import SpooledTile, TileLimits, check_size, resolve_uri


@dataclass
class ReceivedScene:
    header: Any  # pb.SceneHeader
    path: Path  # the file to open: the spool file or the URI's file
    name: str  # how errors name the scene: the caller's tile id or URI
    tile_id: str


class _Messages:
    """A stream's messages pulled on a helper thread, so waiting for the next one is bounded."""

    def __init__(self, requests: Iterator[Any], idle_s: float) -> None:
        self.idle_s = idle_s
        self._queue: queue.Queue = queue.Queue()  # unbounded: the reader never blocks on it
        threading.Thread(target=self._pull, args=(requests,), daemon=True).start()

    def _pull(self, requests: Iterator[Any]) -> None:
        try:
            for msg in requests:
                self._queue.put((msg, None))
        except Exception as exc:  # the call ended (cancelled, deadline): hand it over
            self._queue.put((None, exc))
            return
        self._queue.put((None, None))

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                msg, exc = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                raise ServiceError(
                    ServiceReason.STREAM_IDLE,
                    f"no DetectScene message for {self.idle_s:g} s; send the scene's chunks "
                    "without pauses (the server does not wait for stalled streams)",
                ) from None
            if exc is not None:
                raise ServiceError(ServiceReason.CANCELLED, "the caller went away") from exc
            if msg is None:
                return
            yield msg


class SceneUploads:
    def __init__(
        self,
        max_uploads: int,
        idle_s: float,
        limits: TileLimits,
        spool_dir: str | None = None,
        allowed_root: str | Path | None = None,
    ) -> None:
        self.max_uploads, self.idle_s = max_uploads, idle_s
        self.limits, self.spool_dir, self.allowed_root = limits, spool_dir, allowed_root
        self._slots = threading.BoundedSemaphore(max_uploads)

    @contextmanager
    def receive(
        self, requests: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[ReceivedScene]:
        """The whole scene, spooled (or resolved from its URI); the spool file lives until the
        block ends. Errors name the caller's tile id, never the spool file."""
        if not self._slots.acquire(blocking=False):
            raise ServiceError(
                ServiceReason.OVERLOADED,
                f"{self.max_uploads} scenes are being received; retry with backoff",
            )
        spool: SpooledTile | None = None
        try:
            scene, spool = self._receive(iter(_Messages(requests, self.idle_s)), context)
        except BaseException:
            if spool is not None:
                spool.close()
            raise
        finally:
            self._slots.release()
        try:
            with spool.naming() if spool is not None else _nothing():
                yield scene
        finally:
            if spool is not None:
                spool.close()

    def _receive(
        self, messages: Iterator[Any], context: grpc.ServicerContext
    ) -> tuple[ReceivedScene, SpooledTile | None]:
        first = next(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, "the first DetectScene message must be the header"
            )
        header, tile = first.header, first.header.tile
        if tile.WhichOneof("source") == "uri":
            path = resolve_uri(tile.uri, self.allowed_root)
            return ReceivedScene(header, path, tile.uri, tile.tile_id or path.stem), None
        tile_id = tile.tile_id or "scene"
        check_size(header.total_bytes, self.limits, tile_id)
        spool = SpooledTile(tile_id, self.limits, self.spool_dir)
        try:
            for msg in messages:
                if msg.WhichOneof("part") != "chunk":
                    raise AsmSpotterError(
                        Reason.INVALID_ARGUMENT, "only the first message may be a header"
                    )
                spool.write(msg.chunk)
            if not context.is_active():  # the stream ended because the caller went away
                raise ServiceError(ServiceReason.CANCELLED, "the caller went away")
            return ReceivedScene(header, spool.finish(), tile_id, tile_id), spool
        except BaseException:
            spool.close()
            raise


@contextmanager
def _nothing() -> Iterator[None]:
    yield
