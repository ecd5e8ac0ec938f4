"""The blocking client: every RPC with deadlines, bearer token, TLS and retry with backoff."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from asmspotter.v1 import detection_pb2 as pb
from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from service.client.common import (
    ClientConfig,
    SceneGatherer,
    batch_request,
    batch_results,
    options_proto,
    poll_serving,
    scene_requests,
    tile_proto,
    too_big_for_one_message,
)
from service.client.types import DetectionError, ModelInfo, TileError, TileResult

T = TypeVar("T")
TileInput = str | Path | bytes


class DetectionClient:
    """``DetectionClient("host:port")``; use as a context manager or call ``close``."""

    def __init__(self, targets: str | Sequence[str] = "127.0.0.1:50051", **config: Any) -> None:
        self.config = ClientConfig(targets=targets, **config)
        self.channel = self.config.channel(grpc)
        self.stub = pb_grpc.DetectionServiceStub(self.channel)

    def __enter__(self) -> DetectionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, fn: Callable[[float], T], timeout: float | None) -> T:
        """Run ``fn(time_left)`` with retries until it succeeds or the deadline passes."""
        deadline = time.monotonic() + (timeout or self.config.timeout_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(max(0.001, deadline - time.monotonic()))
            except grpc.RpcError as exc:
                time.sleep(self.config.retry_pause(exc, attempt, deadline))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the channel connects (not until the model is loaded: see ``health``)."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise DetectionError(
                "UNAVAILABLE", "UNAVAILABLE", f"no server at {self.config.targets[0]}"
            ) from None

    # -- RPCs -----------------------------------------------------------------------------------
    def get_model(self, timeout: float | None = None) -> ModelInfo:
        md = self.config.metadata
        response = self._call(
            lambda t: self.stub.GetModel(pb.GetModelRequest(), timeout=t, metadata=md), timeout
        )
        return ModelInfo.from_proto(response.model)

    def detect_tile(
        self,
        tile: TileInput,
        *,
        tile_id: str | None = None,
        min_score: float | None = None,
        output_crs: str = "",
        max_detections: int = 0,
        sensor: str = "",
        band_names: Sequence[str] = (),
        uri: bool = False,
        timeout: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> TileResult:
        """Sites of one tile. Files too large for one message go through ``detect_scene``."""
        options = options_proto(min_score, output_crs, max_detections)
        if not uri and not isinstance(tile, bytes) and too_big_for_one_message(tile, self.config):
            return self.detect_scene(
                tile,
                tile_id=tile_id,
                sensor=sensor,
                band_names=band_names,
                options=options,
                timeout=timeout,
                on_progress=on_progress,
                max_detections=max_detections,
            )
        request = pb.DetectTileRequest(
            tile=tile_proto(tile, tile_id, sensor, band_names, uri), options=options
        )
        md = self.config.metadata
        response = self._call(
            lambda t: self.stub.DetectTile(request, timeout=t, metadata=md), timeout
        )
        return TileResult.from_proto(response.detections, response.model)

    def detect_tiles(
        self,
        tiles: Sequence[TileInput],
        *,
        min_score: float | None = None,
        output_crs: str = "",
        max_detections: int = 0,
        uri: bool = False,
        timeout: float | None = None,
    ) -> list[TileResult | TileError]:
        """One BatchDetectTiles call: a result or a ``TileError`` per tile, in order."""
        request = batch_request(tiles, options_proto(min_score, output_crs, max_detections), uri)
        md = self.config.metadata
        response = self._call(
            lambda t: self.stub.BatchDetectTiles(request, timeout=t, metadata=md), timeout
        )
        return batch_results(request, response)

    def stream_scene(
        self,
        path: str | Path,
        *,
        tile_id: str | None = None,
        sensor: str = "",
        band_names: Sequence[str] = (),
        options: pb.DetectionOptions | None = None,
        timeout: float | None = None,
    ) -> Iterator[pb.DetectSceneResponse]:
        """DetectScene: the raw response stream (sites as they become final, progress)."""
        options = options or options_proto()
        md = self.config.metadata

        def start(t: float) -> Iterator[pb.DetectSceneResponse]:
            requests = scene_requests(
                path, tile_id, sensor, band_names, options, self.config.chunk_bytes
            )
            responses = self.stub.DetectScene(requests, timeout=t, metadata=md)
            first = next(responses)  # admission errors surface here and are retried
            return first, responses

        first, responses = self._call(start, timeout)
        yield first
        try:
            yield from responses
        except grpc.RpcError as exc:
            raise DetectionError.from_rpc(exc) from None

    def detect_scene(
        self,
        path: str | Path,
        *,
        tile_id: str | None = None,
        sensor: str = "",
        band_names: Sequence[str] = (),
        options: pb.DetectionOptions | None = None,
        max_detections: int = 0,
        timeout: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> TileResult:
        """A whole scene through DetectScene, gathered into one ``TileResult``."""
        gathered = SceneGatherer(path, tile_id, options, max_detections)
        for msg in self.stream_scene(
            path,
            tile_id=tile_id,
            sensor=sensor,
            band_names=band_names,
            options=options,
            timeout=timeout,
        ):
            gathered.add(msg)
            if on_progress:
                on_progress(msg.windows_done, msg.windows_total)
        return gathered.result()

    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """The standard health check: 'SERVING', 'NOT_SERVING', ..."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            raise DetectionError.from_rpc(exc) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Poll health until SERVING (the model is loaded and warm)."""
        poll_serving(self, timeout)
