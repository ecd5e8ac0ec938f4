"""Detections for a monitoring run: from a GeoJSON/GeoPackage file, or a tile through a model
(a bundle in this process, or the detection service). ``BundleDetector`` and ``ServerDetector``
keep their model or channel across tiles (``asmspotter watch`` detects one tile per acquisition);
both are callables ``detector(tile, min_score) -> (features, run metadata)``; ``min_score``
None leaves the threshold to the model (the bundle's default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from imagery.vector import Features, read_features
from monitoring.monitor import features_from_geometries

Detection = tuple[Features, dict[str, Any]]


class Detector(Protocol):
    def __call__(self, tile: str | Path, min_score: float | None = None) -> Detection: ...

    def close(self) -> None: ...


def from_file(path: str | Path) -> Detection:
    """Detections drawn or exported earlier (e.g. the service's GeoJSON response)."""
    return read_features(path), {"source": str(path)}


class BundleDetector:
    """A ``service.predictor.Predictor`` in this process (needs the ``server`` extra: torch)."""

    def __init__(self, predictor: Any, source: str) -> None:
        self.predictor, self.source = predictor, source

    @classmethod
    def load(cls, bundle: str | Path) -> BundleDetector:
        from service.predictor import Predictor
        from training.model import load_bundle

        return cls(Predictor(load_bundle(bundle)), str(bundle))

    def __call__(self, tile: str | Path, min_score: float | None = None) -> Detection:
        from service.predictor import DetectOptions

        options = DetectOptions() if min_score is None else DetectOptions(min_score=min_score)
        result = self.predictor.detect_file(tile, options)
        version = self.predictor.version
        features = features_from_geometries(
            [s.geometry for s in result.sites],
            result.crs,
            [{"score": s.score, "class": s.class_name} for s in result.sites],
        )
        return features, {
            "source": self.source,
            "model_version": f"{version['name']}-{version['version']}",
            "weights_sha256": version["weights_sha256"],
        }

    def close(self) -> None:
        self.predictor.close()


class ServerDetector:
    """A running detection service (gRPC, through the client SDK; no torch here)."""

    def __init__(self, target: str) -> None:
        from service.client import DetectionClient

        self.target = target
        self.client = DetectionClient(target)

    def __call__(self, tile: str | Path, min_score: float | None = None) -> Detection:
        from shapely.geometry import shape

        result = self.client.detect_tile(str(tile), output_crs="EPSG:4326", min_score=min_score)
        features = features_from_geometries(
            [shape(s.geometry) for s in result.sites],
            result.crs or "EPSG:4326",
            [{"score": s.score, "class": s.class_name} for s in result.sites],
        )
        return features, {
            "source": f"grpc://{self.target}",
            "model_version": f"{result.model.name}-{result.model.version}",
            "weights_sha256": result.model.weights_sha256,
        }

    def close(self) -> None:
        self.client.close()


def from_bundle(tile: str | Path, bundle: str | Path) -> Detection:
    """Run the model bundle over one tile in-process."""
    detector = BundleDetector.load(bundle)
    try:
        return detector(tile)
    finally:
        detector.close()


def from_server(tile: str | Path, target: str) -> Detection:
    """Ask a running detection service about one tile."""
    detector = ServerDetector(target)
    try:
        return detector(tile)
    finally:
        detector.close()
