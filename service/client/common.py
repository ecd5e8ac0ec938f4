"""What the sync and asyncio clients share: connection settings, retry policy, request building."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from asmspotter.v1 import detection_pb2 as pb
from service.client.types import DetectionError, Site, TileError, TileResult

MiB = 1024**2
RETRY_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter on UNAVAILABLE and RESOURCE_EXHAUSTED (overload)."""

    max_attempts: int = 8  # about 12 s of waiting in all, on average
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return random.uniform(0, cap)

    def retryable(self, err: DetectionError, attempt: int) -> bool:
        if attempt >= self.max_attempts or err.code not in RETRY_CODES:
            return False
        # The transport's own message-size refusal is RESOURCE_EXHAUSTED too, but never passes.
        return not (err.code == "RESOURCE_EXHAUSTED" and "message larger than max" in err.message)


@dataclass
class ClientConfig:
    """How to reach the server(s). ``targets`` is a list so that spreading calls over several
    servers can be added without changing the API; today calls go to the first target."""

    targets: Sequence[str] = ("127.0.0.1:50051",)
    token: str | None = None
    tls_root_cert: bytes | None = None  # PEM; set (or tls=True) for TLS
    tls: bool = False
    timeout_s: float = 300.0  # per call, retries included
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_message_bytes: int = 64 * MiB  # must match the server's
    chunk_bytes: int = 4 * MiB  # DetectScene chunk size

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = (self.targets,)
        if not self.targets:
            raise ValueError("need at least one server address")

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_send_message_length", self.max_message_bytes + MiB),
            ("grpc.max_receive_message_length", self.max_message_bytes + MiB),
        ]

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls or self.tls_root_cert:
            return grpc.ssl_channel_credentials(root_certificates=self.tls_root_cert)
        return None

    def channel(self, transport: ModuleType) -> Any:
        """A channel to the first target; ``transport`` is ``grpc`` or ``grpc.aio``."""
        creds, opts = self.credentials(), self.channel_options()
        target = self.targets[0]
        if creds:
            return transport.secure_channel(target, creds, opts)
        return transport.insecure_channel(target, opts)

    def retry_pause(self, exc: grpc.RpcError, attempt: int, deadline: float) -> float:
        """Seconds to wait before retrying a failed attempt; raises its ``DetectionError`` when
        the error is final or the wait would pass the deadline."""
        err = DetectionError.from_rpc(exc)
        pause = self.retry.backoff(attempt)
        if not self.retry.retryable(err, attempt) or time.monotonic() + pause >= deadline:
            raise err from None
        return pause


def options_proto(
    min_score: float | None = None, output_crs: str = "", max_detections: int = 0
) -> pb.DetectionOptions:
    msg = pb.DetectionOptions(output_crs=output_crs, max_detections=max_detections)
    if min_score is not None:
        msg.min_score = min_score
    return msg


def tile_proto(
    tile: str | Path | bytes,
    tile_id: str | None = None,
    sensor: str = "",
    band_names: Sequence[str] = (),
    uri: bool = False,
) -> pb.Tile:
    """A path (read here, or sent as a URI for the server to read when ``uri``) or bytes."""
    msg = pb.Tile(sensor=sensor, band_names=list(band_names))
    if isinstance(tile, bytes):
        msg.content = tile
    elif uri:
        msg.uri = str(tile)
    else:
        msg.content = Path(tile).read_bytes()
    msg.tile_id = tile_id or ("" if isinstance(tile, bytes) else Path(str(tile)).stem)
    return msg


def too_big_for_one_message(tile: str | Path | bytes, config: ClientConfig) -> bool:
    size = len(tile) if isinstance(tile, bytes) else Path(tile).stat().st_size
    return size > config.max_message_bytes - 64 * 1024


def scene_requests(
    path: str | Path,
    tile_id: str | None,
    sensor: str,
    band_names: Sequence[str],
    options: pb.DetectionOptions,
    chunk_bytes: int,
) -> Iterator[pb.DetectSceneRequest]:
    """Header, then the file in chunks (read lazily, so memory stays flat)."""
    path = Path(path)
    header = pb.SceneHeader(
        tile=pb.Tile(tile_id=tile_id or path.stem, sensor=sensor, band_names=list(band_names)),
        options=options,
        total_bytes=path.stat().st_size,
    )
    yield pb.DetectSceneRequest(header=header)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            yield pb.DetectSceneRequest(chunk=chunk)


def batch_request(
    tiles: Sequence[str | Path | bytes], options: pb.DetectionOptions, uri: bool
) -> pb.BatchDetectTilesRequest:
    requests = [pb.DetectTileRequest(tile=tile_proto(t, uri=uri), options=options) for t in tiles]
    return pb.BatchDetectTilesRequest(requests=requests)


def batch_results(
    request: pb.BatchDetectTilesRequest, response: pb.BatchDetectTilesResponse
) -> list[TileResult | TileError]:
    """A result or a ``TileError`` per tile, in the request's order."""
    out: list[TileResult | TileError] = []
    for req, res in zip(request.requests, response.results, strict=True):
        if res.WhichOneof("outcome") == "detections":
            out.append(TileResult.from_proto(res.detections, response.model))
        else:
            out.append(TileError.from_status(req.tile.tile_id or req.tile.uri, res.error))
    return out


class SceneGatherer:
    """Collects a DetectScene response stream into one ``TileResult``, best sites first."""

    def __init__(
        self,
        path: str | Path,
        tile_id: str | None,
        options: pb.DetectionOptions | None,
        max_detections: int,
    ) -> None:
        self.tile_id = tile_id or Path(path).stem
        self.crs = (options.output_crs if options else "") or "EPSG:4326"
        self.max_detections = max_detections
        self.sites: list[Site] = []
        self.model = pb.ModelVersion()
        self.windows_total = 0
        self.grid_check: pb.GridCheck | None = None

    def add(self, msg: pb.DetectSceneResponse) -> None:
        self.sites += [Site.from_proto(s) for s in msg.sites]
        self.model, self.windows_total = msg.model, msg.windows_total
        if msg.HasField("grid_check"):
            self.grid_check = msg.grid_check

    def result(self) -> TileResult:
        sites = sorted(self.sites, key=lambda s: -s.score)
        if self.max_detections:
            del sites[self.max_detections :]
        result = TileResult.from_proto(
            pb.TileDetections(tile_id=self.tile_id, grid_check=self.grid_check), self.model
        )
        result.sites, result.crs, result.window_count = sites, self.crs, self.windows_total
        return result


def poll_serving(
    client: Any, timeout: float, on_wait: Callable[[], None] | None = None, target: str = ""
) -> None:
    """Poll ``client.health()`` until SERVING (the model is loaded and warm); ``on_wait`` is
    called once if it is not at once. UNAVAILABLE/NOT_READY after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        try:
            if client.health(timeout=max(0.1, min(5.0, end - time.monotonic()))) == "SERVING":
                return
        except DetectionError:
            pass
        if time.monotonic() >= end:
            raise DetectionError(
                "UNAVAILABLE", "NOT_READY", f"{target or 'the server'} is not SERVING"
            )
        if on_wait is not None:
            on_wait()
            on_wait = None
        time.sleep(0.2)


def wait_until_serving(client: Any, timeout: float, target: str = "the server") -> None:
    """Block until ``client``'s server (a ``DetectionClient`` or ``ServerPool``) answers SERVING:
    it listens within ``min(30 s, timeout)`` and loads its model within ``timeout`` (a server
    that was just started), saying once that it waits."""
    from imagery import feedback

    client.wait_ready(timeout=min(30.0, timeout))
    poll_serving(
        client,
        timeout,
        lambda: feedback.step(f"waiting for {target} to load its model ..."),
        f"{target} (after {timeout:g} s)",
    )
