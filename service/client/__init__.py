"""Client SDK of the detection service (no torch needed).

from service.client import DetectionClient
with DetectionClient("127.0.0.1:50051") as client:
    result = client.detect_tile("tile.tif")
"""

from service.client.aio import AsyncDetectionClient
from service.client.batch import BatchReport, expand_inputs, submit_batch
from service.client.common import ClientConfig, RetryPolicy
from service.client.sync import DetectionClient
from service.client.types import (
    DetectionError,
    ModelInfo,
    ModelVersion,
    Site,
    TileError,
    TileResult,
)

__all__ = [
    "AsyncDetectionClient",
    "BatchReport",
    "ClientConfig",
    "DetectionClient",
    "DetectionError",
    "ModelInfo",
    "ModelVersion",
    "RetryPolicy",
    "Site",
    "TileError",
    "TileResult",
    "expand_inputs",
    "submit_batch",
]
