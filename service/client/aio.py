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
    options_proto,
    scene_requests,
    tile_proto,
    too_big_for_one_message,
)
from service.client.types import DetectionError, ModelInfo, Site, TileError, TileResult

T = TypeVar("T")
TileInput = str | Path | bytes


class AsyncDetectionClient:
    """``async with AsyncDetectionClient("host:port") as client: await client.detect_tile(p)``."""

    def __init__(self, targets: str | Sequence[str] = "127.0.0.1:50051", **config: Any) -> None:
        self.config = ClientConfig(targets=targets, **config)
        target = self.config.targets[0]
        creds = self.config.credentials()
        opts = self.config.channel_options()
        self.channel = (
            aio.secure_channel(target, creds, opts) if creds else aio.insecure_channel(target, opts)
        )
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
                err = DetectionError.from_rpc(exc)
                pause = self.config.retry.backoff(attempt)
                if not self.config.retry.retryable(err, attempt) or (
                    time.monotonic() + pause >= deadline
                ):
                    raise err from None
                await asyncio.sleep(pause)

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
        options = options_proto(min_score, output_crs, max_detections)
        requests = [
            pb.DetectTileRequest(tile=tile_proto(t, uri=uri), options=options) for t in tiles
        ]
        md = self.config.metadata
        response = await self._call(
            lambda t: self.stub.BatchDetectTiles(
                pb.BatchDetectTilesRequest(requests=requests), timeout=t, metadata=md
            ),
            timeout,
        )
        out: list[TileResult | TileError] = []
        for req, res in zip(requests, response.results, strict=True):
            if res.WhichOneof("outcome") == "detections":
                out.append(TileResult.from_proto(res.detections, response.model))
            else:
                out.append(TileError.from_status(req.tile.tile_id or req.tile.uri, res.error))
        return out

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
        sites: list[Site] = []
        model, total = pb.ModelVersion(), 0
        async for msg in self.stream_scene(
            path,
            tile_id=tile_id,
            sensor=sensor,
            band_names=band_names,
            options=options,
            timeout=timeout,
        ):
            sites += [Site.from_proto(s) for s in msg.sites]
            model, total = msg.model, msg.windows_total
        sites.sort(key=lambda s: -s.score)
        if max_detections:
            del sites[max_detections:]
        result = TileResult.from_proto(pb.TileDetections(tile_id=tile_id or Path(path).stem), model)
        result.sites = sites
        result.crs = (options.output_crs if options else "") or "EPSG:4326"
        result.window_count = total
        return result
