"""Plain result types of the client SDK, converted from the protobuf messages (no torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import status_pb2

from asmspotter.v1 import detection_pb2 as pb
from service.errors import code_name, error_info

STATUS_DETAILS_KEY = "grpc-status-details-bin"
CLASS_NAMES = {pb.SITE_CLASS_PIT: "pit", pb.SITE_CLASS_POND: "pond"}


class DetectionError(Exception):
    """A call the server refused or that failed: gRPC code, ErrorInfo reason, message."""

    def __init__(
        self, code: str, reason: str, message: str, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    def __str__(self) -> str:
        return f"[{self.reason}] {self.message}"

    @classmethod
    def from_rpc(cls, exc: grpc.RpcError) -> DetectionError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        info = error_info(status) if (status := _status_of(exc)) is not None else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        reason = info.reason if info else code.name
        return cls(code.name, reason, details or code.name, dict(info.metadata) if info else {})


def _status_of(exc: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status in an error's trailing metadata (sync and asyncio errors alike)."""
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in list(metadata or ()):
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


@dataclass
class Site:
    site_id: str
    class_name: str
    score: float
    geometry: dict[str, Any]  # GeoJSON geometry in the response's CRS
    bbox: tuple[float, float, float, float]
    area_m2: float
    tile_id: str

    @classmethod
    def from_proto(cls, msg: pb.Site) -> Site:
        b = msg.bbox
        return cls(
            site_id=msg.site_id,
            class_name=CLASS_NAMES.get(msg.site_class, "unspecified"),
            score=float(msg.score),
            geometry=json.loads(msg.geometry_geojson),
            bbox=(b.min_x, b.min_y, b.max_x, b.max_y),
            area_m2=msg.area_m2,
            tile_id=msg.tile_id,
        )

    def feature(self, **extra: Any) -> dict[str, Any]:
        props = {
            "site_id": self.site_id,
            "class": self.class_name,
            "score": self.score,
            "area_m2": self.area_m2,
            "tile_id": self.tile_id,
            **extra,
        }
        return {"type": "Feature", "geometry": self.geometry, "properties": props}


@dataclass
class ModelVersion:
    name: str
    version: str
    weights_sha256: str

    @classmethod
    def from_proto(cls, msg: pb.ModelVersion) -> ModelVersion:
        return cls(msg.name, msg.version, msg.weights_sha256)


@dataclass
class GridCheck:
    """The tile's ground sampling distance and whether the server resampled it."""

    tile_gsd_m: float
    model_gsd_m: float
    resampled: bool
    crs: str
    notice: str

    @classmethod
    def from_proto(cls, msg: pb.GridCheck) -> GridCheck:
        return cls(msg.tile_gsd_m, msg.model_gsd_m, msg.resampled, msg.crs, msg.notice)


@dataclass
class TileResult:
    tile_id: str
    sites: list[Site]
    crs: str
    width: int
    height: int
    window_count: int
    model: ModelVersion
    grid_check: GridCheck | None = None

    @classmethod
    def from_proto(cls, msg: pb.TileDetections, model: pb.ModelVersion) -> TileResult:
        return cls(
            tile_id=msg.tile_id,
            sites=[Site.from_proto(s) for s in msg.sites],
            crs=msg.crs,
            width=msg.width,
            height=msg.height,
            window_count=msg.window_count,
            model=ModelVersion.from_proto(model),
            grid_check=(
                GridCheck.from_proto(msg.grid_check) if msg.HasField("grid_check") else None
            ),
        )


@dataclass
class TileError:
    """One tile of a batch that failed; the others went on."""

    tile_id: str
    code: str
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_status(cls, tile_id: str, status: Any) -> TileError:
        info = error_info(status)
        return cls(
            tile_id,
            code_name(status.code),
            info.reason if info else code_name(status.code),
            status.message,
            dict(info.metadata) if info else {},
        )

    @classmethod
    def from_exception(cls, tile_id: str, exc: DetectionError) -> TileError:
        return cls(tile_id, exc.code, exc.reason, exc.message, exc.metadata)


@dataclass
class ModelInfo:
    name: str
    version: str
    engine: str
    sensor: str
    band_names: list[str]
    chip_size: int
    classes: list[str]
    metrics: dict[str, float]
    weights_sha256: str
    create_time: str
    device: str

    @classmethod
    def from_proto(cls, msg: pb.Model) -> ModelInfo:
        return cls(
            msg.name,
            msg.version,
            msg.engine,
            msg.sensor,
            list(msg.band_names),
            msg.chip_size,
            list(msg.classes),
            dict(msg.metrics),
            msg.weights_sha256,
            msg.create_time,
            msg.device,
        )
