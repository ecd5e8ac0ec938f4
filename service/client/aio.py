"""The asyncio client: the same calls as ``DetectionClient``, awaitable, with the same retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc import aio

from asmspotter.v1 import detection_pb2 as pb
from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from service.client.common import (
    ClientConfig,
    SceneGatherer,
    batch_request,
    batch_results,
    options_proto,
    scene_requests,
    tile_proto,
    too_big_for_one_message,
)
from service.client.types import DetectionError, ModelInfo, TileError, TileResult

T = TypeVar("T")
TileInput = str | Path | bytes


class AsyncDetectionClient:
    """``async with AsyncDetectionClient("host:port") as client: await client.detect_tile(p)``."""

    def __init__(self, targets: str | Sequence[str] = "127.0.0.1:50051", **config: Any) -> None:
        self.config = ClientConfig(targets=targets, **config)
        self.channel = self.config.channel(aio)
        self.stub = pb_grpc.DetectionServiceStub(self.channel)

    async def __aenter__(self) -> AsyncDetectionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, fn: Callable[[float], Awaitable[T]], timeout: float | None) -> T:
        deadline = time.monotonic() + (timeout or self.config.timeout_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn(max(0.001, deadline - time.monotonic()))
            except grpc.RpcError as exc:
                await asyncio.sleep(self.config.retry_pause(exc, attempt, deadline))

    async def get_model(self, timeout: float | None = None) -> ModelInfo:
        md = self.config.metadata
        response = await self._call(
            lambda t: self.stub.GetModel(pb.GetModelRequest(), timeout=t, metadata=md), timeout
        )
        return ModelInfo.from_proto(response.model)

    async def detect_tile(
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
    ) -> TileResult:
        options = options_proto(min_score, output_crs, max_detections)
        if not uri and not isinstance(tile, bytes) and too_big_for_one_message(tile, self.config):
            return await self.detect_scene(
                tile,
                tile_id=tile_id,
                sensor=sensor,
                band_names=band_names,
                options=options,
                max_detections=max_detections,
                timeout=timeout,
            )
        request = pb.DetectTileRequest(
            tile=tile_proto(tile, tile_id, sensor, band_names, uri), options=options
        )
        md = self.config.metadata
        response = await self._call(
            lambda t: self.stub.DetectTile(request, timeout=t, metadata=md), timeout
        )
        return TileResult.from_proto(response.detections, response.model)

    async def detect_tiles(
        self,
        tiles: Sequence[TileInput],
        *,
        min_score: float | None = None,
        output_crs: str = "",
        max_detections: int = 0,
        uri: bool = False,
        timeout: float | None = None,
    ) -> list[TileResult | TileError]:
        request = batch_request(tiles, options_proto(min_score, output_crs, max_detections), uri)
        md = self.config.metadata
        response = await self._call(
            lambda t: self.stub.BatchDetectTiles(request, timeout=t, metadata=md), timeout
        )
        return batch_results(request, response)

    async def stream_scene(
        self,
        path: str | Path,
        *,
        tile_id: str | None = None,
        sensor: str = "",
        band_names: Sequence[str] = (),
        options: pb.DetectionOptions | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.DetectSceneResponse]:
        options = options or options_proto()
        md = self.config.metadata

        async def start(t: float) -> tuple[Any, Any]:
            requests = scene_requests(
                path, tile_id, sensor, band_names, options, self.config.chunk_bytes
            )
            call = self.stub.DetectScene(iter(requests), timeout=t, metadata=md)
            return await call.read(), call  # admission errors surface here and are retried

        msg, call = await self._call(start, timeout)
        try:
            while msg is not aio.EOF:
                yield msg
                msg = await call.read()
        except grpc.RpcError as exc:
            raise DetectionError.from_rpc(exc) from None

    async def detect_scene(
        self,
        path: str | Path,
        *,
        tile_id: str | None = None,
        sensor: str = "",
        band_names: Sequence[str] = (),
        options: pb.DetectionOptions | None = None,
        max_detections: int = 0,
        timeout: float | None = None,
    ) -> TileResult:
        gathered = SceneGatherer(path, tile_id, options, max_detections)
        async for msg in self.stream_scene(
            path,
            tile_id=tile_id,
            sensor=sensor,
            band_names=band_names,
            options=options,
            timeout=timeout,
        ):
            gathered.add(msg)
        return gathered.result()
