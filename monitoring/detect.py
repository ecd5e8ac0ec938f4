"""Detections for a monitoring run: from a GeoJSON/GeoPackage file, or a tile through a model
(a bundle in this process, or the detection service). ``BundleDetector`` and ``ServerDetector``
keep their model or channel across tiles (``asmspotter watch`` detects one tile per acquisition);
both are callables ``detector(tile, min_score) -> (features, run metadata)``; ``min_score``
None leaves the threshold to the model (the bundle's default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from imagery import feedback
from imagery.errors import AsmSpotterError, Reason
from imagery.vector import Features, read_features
from monitoring.monitor import features_from_geometries

Detection = tuple[Features, dict[str, Any]]


class Detector(Protocol):
    def __call__(self, tile: str | Path, min_score: float | None = None) -> Detection: ...

    def close(self) -> None: ...


def from_file(
    path: str | Path, model_version: str | None = None, weights_sha256: str | None = None
) -> Detection:
    """Detections drawn or exported earlier (e.g. ``asmspotter detect``'s GeoJSON).

    The model's identity comes from the features' ``model_name``/``model_version``/
    ``weights_sha256`` (what ``detect`` writes) or from the arguments; it is never left empty:
    a file that does not say which model produced it, or says several, is refused unless both
    arguments are given (``none`` for hand-drawn polygons), and arguments that contradict the
    file are refused.
    """
    features = read_features(path)
    found = {_identity(p) for p in features.properties} - {None}
    if not features.properties:  # no site: the collection itself may name the model
        found = {_identity(_collection_model(path))} - {None}
    name = str(path)
    if len(found) > 1:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"detections of {len(found)} models ({', '.join(sorted(f[0] for f in found))}); "
            "record one model's detections per run",
            name,
        )
    file_version, file_sha = next(iter(found)) if found else (None, None)
    if model_version and file_version and model_version != file_version:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"--model-version {model_version} contradicts the file ({file_version})",
            name,
        )
    if weights_sha256 and file_sha and weights_sha256 != file_sha:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"--weights-sha256 {weights_sha256[:12]}... contradicts the file ({file_sha[:12]}...)",
            name,
        )
    version, sha = model_version or file_version, weights_sha256 or file_sha
    if not version or not sha:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            "the detections do not say which model produced them; give --model-version "
            "NAME-VERSION and --weights-sha256 HASH (for hand-drawn or external polygons, e.g. "
            "--model-version manual-2024-03 --weights-sha256 none)",
            name,
        )
    return features, {"source": name, "model_version": version, "weights_sha256": sha}


def _collection_model(path: str | Path) -> dict[str, Any]:
    """The ``model`` member of a GeoJSON FeatureCollection (``imagery.geometry.
    feature_collection``), or {}."""
    import json

    if Path(path).suffix.lower() not in (".geojson", ".json"):
        return {}
    try:
        model = json.loads(Path(path).read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return {}
    return model if isinstance(model, dict) else {}


def _identity(props: dict[str, Any]) -> tuple[str, str] | None:
    version, name = props.get("model_version"), props.get("model_name")
    if not version:
        return None
    label = f"{name}-{version}" if name and not str(version).startswith(f"{name}-") else version
    return str(label), str(props.get("weights_sha256") or "")


def _notice(tile: str | Path, check: Any) -> None:
    if check is not None and check.notice:
        feedback.notice(f"{tile}: {check.notice}")


class BundleDetector:
    """A ``service.predictor.Predictor`` in this process (needs the ``server`` extra: torch)."""

    def __init__(self, predictor: Any, source: str, band_order: list[str] | None = None) -> None:
        self.predictor, self.source, self.band_order = predictor, source, band_order

    @classmethod
    def load(cls, bundle: str | Path, band_order: list[str] | None = None) -> BundleDetector:
        from service.predictor import Predictor
        from training.model import load_bundle

        return cls(Predictor(load_bundle(bundle)), str(bundle), band_order)

    def __call__(self, tile: str | Path, min_score: float | None = None) -> Detection:
        from service.predictor import DetectOptions

        options = DetectOptions() if min_score is None else DetectOptions(min_score=min_score)
        result = self.predictor.detect_file(tile, options, band_names=self.band_order)
        _notice(tile, result.grid_check)
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

    def __init__(self, target: str, band_order: list[str] | None = None) -> None:
        from service.client import DetectionClient

        self.target, self.band_order = target, band_order
        self.client = DetectionClient(target)
        self._serving = False

    def __call__(self, tile: str | Path, min_score: float | None = None) -> Detection:
        from shapely.geometry import shape

        from service.client.common import wait_until_serving

        if not self._serving:  # a service started a moment ago may still load its model
            wait_until_serving(self.client, 600.0, f"the detection service at {self.target}")
            self._serving = True
        result = self.client.detect_tile(
            str(tile),
            output_crs="EPSG:4326",
            min_score=min_score,
            band_names=self.band_order or (),
        )
        _notice(tile, result.grid_check)
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


def from_bundle(
    tile: str | Path, bundle: str | Path, band_order: list[str] | None = None
) -> Detection:
    """Run the model bundle over one tile in-process."""
    detector = BundleDetector.load(bundle, band_order)
    try:
        return detector(tile)
    finally:
        detector.close()


def from_server(tile: str | Path, target: str, band_order: list[str] | None = None) -> Detection:
    """Ask a running detection service about one tile."""
    detector = ServerDetector(target, band_order)
    try:
        return detector(tile)
    finally:
        detector.close()
