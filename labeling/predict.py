"""Pre-annotations: model or existing polygons -> Label Studio predictions with scores.

Three sources share one interface (``predict(chip, task data) -> list[Site]`` in chip pixels):
a model bundle loaded in process, the gRPC detection service, and a vector file of existing
polygons (e.g. Amazon Mining Watch GeoJSON, the West Africa shapefile) to be corrected by labellers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shapely
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon, box, shape

from imagery.coco import CLASS_NAMES
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import as_crs, reproject, to_map_space, to_pixel_space
from imagery.scene import open_scene
from imagery.vector import read_features
from labeling.project import call
from labeling.regions import Site, site_results

MIN_AREA_PX = 0.5  # parts of existing polygons smaller than this on a chip are not suggested


class Predictor(Protocol):
    model_version: str

    def predict(self, chip: Path, data: dict[str, Any]) -> list[Site]: ...


def chip_file(data: dict[str, Any], files_root: Path) -> Path:
    """The N-band GeoTIFF chip of a task (its ``chip`` path is relative to the files root)."""
    path = Path(data.get("chip", ""))
    return path if path.is_absolute() else Path(files_root) / path


def chip_transform(data: dict[str, Any]) -> Affine:
    return Affine(*data["transform"][:6])


class BundlePredictor:
    """A model bundle (``training`` package, torch) run in this process."""

    def __init__(
        self, bundle: str | Path, device: str | None = None, min_score: float = 0.5
    ) -> None:
        try:
            from training.model import load_bundle
        except ModuleNotFoundError as exc:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"predicting from a bundle needs the training extra ({exc.name} is missing); "
                "use --service to ask the detection service instead",
            ) from exc
        self.model = load_bundle(bundle, device)
        info = self.model.info
        self.bands = list(info["bands"])
        self.classes = list(info["classes"])
        self.min_score = min_score
        self.model_version = f"{info['name']}-{info['version']}"

    def predict(self, chip: Path, data: dict[str, Any]) -> list[Site]:
        with open_scene(chip, bands=self.bands) as scene:
            values = scene.read()  # NaN = nodata: the model prepares it as every caller's
        found = self.model.predict(values[None], self.min_score)[0]
        return [
            Site(self.classes[int(c)], mask=m, score=float(s))
            for m, s, c in zip(found.masks, found.scores, found.classes, strict=True)
            if m.any()
        ]


class ServicePredictor:
    """The gRPC detection service, through its client SDK."""

    def __init__(self, target: str, min_score: float = 0.5, **config: Any) -> None:
        from service.client import DetectionClient, DetectionError

        self.client = DetectionClient(target, **config)
        self.min_score = min_score
        try:
            info = self.client.get_model()
        except DetectionError as exc:
            self.client.close()
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"detection service {target} did not answer ({exc})"
            ) from exc
        self.model_version = f"{info.name}-{info.version}"

    def predict(self, chip: Path, data: dict[str, Any]) -> list[Site]:
        result = self.client.detect_tile(str(chip), min_score=self.min_score)
        transform, sites = chip_transform(data), []
        for found in result.sites:
            geom = shape(found.geometry)
            if result.crs and as_crs(result.crs) != as_crs(data["crs"]):
                geom = reproject(geom, result.crs, data["crs"])
            sites.append(Site(found.class_name, to_pixel_space(geom, transform), score=found.score))
        return sites

    def close(self) -> None:
        self.client.close()


class PolygonPredictor:
    """Existing polygons (any CRS) suggested on the chips they overlap, clipped to each chip.

    The class comes from ``label_field`` when its value is ``pit``/``pond``, else ``label``; the
    score from ``score_field`` when numeric, else ``score``. Invalid shapes are repaired first.
    """

    def __init__(
        self,
        path: str | Path,
        label: str = "pit",
        score: float = 1.0,
        label_field: str | None = None,
        score_field: str | None = None,
    ) -> None:
        if label not in CLASS_NAMES:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"label must be one of {CLASS_NAMES}")
        features = read_features(path)
        self.source = features
        self.label, self.score = label, score
        self.label_field, self.score_field = label_field, score_field
        self.model_version = f"polygons-{Path(path).stem}"
        self._by_crs: dict[str, tuple[shapely.STRtree, list, list]] = {}

    def _in_crs(self, crs: str) -> tuple[shapely.STRtree, list, list]:
        if crs not in self._by_crs:
            geoms, props = [], []
            for geom, prop in zip(self.source.geometries, self.source.properties, strict=True):
                if geom is None or geom.is_empty:
                    continue
                geom = shapely.force_2d(geom)
                if not geom.is_valid:
                    geom = shapely.make_valid(geom)
                geoms.append(reproject(geom, self.source.crs, crs))
                props.append(prop)
            self._by_crs[crs] = (shapely.STRtree(geoms), geoms, props)
        return self._by_crs[crs]

    def _label(self, prop: dict[str, Any]) -> str:
        value = str(prop.get(self.label_field, "")).lower() if self.label_field else ""
        return value if value in CLASS_NAMES else self.label

    def _score(self, prop: dict[str, Any]) -> float:
        value = prop.get(self.score_field) if self.score_field else None
        return float(value) if isinstance(value, int | float) else self.score

    def predict(self, chip: Path, data: dict[str, Any]) -> list[Site]:
        tree, geoms, props = self._in_crs(data["crs"])
        transform, w, h = chip_transform(data), int(data["width"]), int(data["height"])
        frame = box(0, 0, w, h)
        sites = []
        for i in tree.query(to_map_space(frame, transform)):
            px = to_pixel_space(geoms[int(i)], transform).intersection(frame)
            parts = getattr(px, "geoms", [px])
            polys = [p for p in parts if isinstance(p, Polygon | MultiPolygon)]
            if not polys:
                continue
            geom = shapely.union_all(polys)
            if geom.area >= MIN_AREA_PX:
                sites.append(Site(self._label(props[i]), geom, score=self._score(props[i])))
        return sites


def prediction_for(predictor: Predictor, data: dict[str, Any], files_root: Path) -> dict[str, Any]:
    """One task's Label Studio prediction: regions with scores, task score = mean region score."""
    w, h = int(data["width"]), int(data["height"])
    sites = predictor.predict(chip_file(data, files_root), data)
    result = [r for site in sites for r in site_results(site, w, h)]
    scores = [s.score for s in sites if s.score is not None]
    return {
        "result": result,
        "score": float(np.mean(scores)) if scores else 0.0,
        "model_version": predictor.model_version,
    }


def push_predictions(
    ls: Any, project_id: int, predictor: Predictor, files_root: Path
) -> tuple[int, int]:
    """Add the predictor's prediction to every task lacking one of its model version.

    Returns (tasks given a prediction, regions suggested). Safe to re-run.
    """
    tasks = call("list tasks", ls.tasks.list, project=project_id, resolve_uri=False)
    done = regions = 0
    for task in tasks:
        versions = {
            p.get("model_version") if isinstance(p, dict) else getattr(p, "model_version", None)
            for p in (task.predictions or [])
        }
        if predictor.model_version in versions:
            continue
        prediction = prediction_for(predictor, task.data, files_root)
        call("add a prediction", ls.predictions.create, task=task.id, **prediction)
        done += 1
        regions += len(prediction["result"])
    return done, regions


def files_root_default() -> Path | None:
    root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    return Path(root) if root else None
