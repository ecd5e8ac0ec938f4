"""Detections for a monitoring run: from a GeoJSON/GeoPackage file, or a tile through a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagery.vector import Features, read_features
from monitoring.monitor import features_from_geometries


def from_file(path: str | Path) -> tuple[Features, dict[str, Any]]:
    """Detections drawn or exported earlier (e.g. the service's GeoJSON response)."""
    return read_features(path), {"source": str(path)}


def from_bundle(tile: str | Path, bundle: str | Path) -> tuple[Features, dict[str, Any]]:
    """Run the model bundle over the tile in-process (needs the ``server`` extra: torch)."""
    from service.predictor import DetectOptions, Predictor
    from training.model import load_bundle

    predictor = Predictor(load_bundle(bundle))
    try:
        options = DetectOptions()
        result = predictor.detect_file(tile, options)
    finally:
        predictor.close()
    version = predictor.version
    features = features_from_geometries(
        [s.geometry for s in result.sites],
        result.crs,
        [{"score": s.score, "class": s.class_name} for s in result.sites],
    )
    return features, {
        "source": f"{bundle}",
        "model_version": f"{version['name']}-{version['version']}",
        "weights_sha256": version["weights_sha256"],
    }


def from_server(tile: str | Path, target: str) -> tuple[Features, dict[str, Any]]:
    """Ask a running detection service (gRPC, through the client SDK; no torch here)."""
    from shapely.geometry import shape

    from service.client import DetectionClient

    with DetectionClient(target) as client:
        result = client.detect_tile(str(tile), output_crs="EPSG:4326")
    features = features_from_geometries(
        [shape(s.geometry) for s in result.sites],
        result.crs or "EPSG:4326",
        [{"score": s.score, "class": s.class_name} for s in result.sites],
    )
    return features, {
        "source": f"grpc://{target}",
        "model_version": f"{result.model.name}-{result.model.version}",
        "weights_sha256": result.model.weights_sha256,
    }
