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
from shapely.geometry.base import BaseGeometry

from imagery import feedback
from imagery.coco import CLASS_NAMES
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import (
    WGS84,
    as_crs,
    reproject,
    to_map_space,
    to_pixel_space,
)
from imagery.gsd import plan_model_grid
from imagery.scene import open_scene
from imagery.sensors import get_sensor
from imagery.vector import Features, read_features
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
        self, bundle: str | Path, device: str | None = None, min_score: float | None = None
    ) -> None:
        try:
            from training.engines.base import optional_bands
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
        self.optional_bands = optional_bands(info)
        self.classes = list(info["classes"])
        self.min_score = min_score
        self.model_version = f"{info['name']}-{info['version']}"
        self.gsd_m = float(info.get("gsd_m") or get_sensor(info["sensor"]).grid_m)

    def predict(self, chip: Path, data: dict[str, Any]) -> list[Site]:
        with open_scene(chip, bands=self.bands, optional_bands=self.optional_bands) as scene:
            g = scene.grid
            plan = plan_model_grid(g.crs, g.transform, g.width, g.height, self.gsd_m, str(chip))
            if plan.check.resampled:  # labels live on the chip's pixels: no resampling here
                raise AsmSpotterError(
                    Reason.GSD_MISMATCH,
                    f"chips of {plan.check.tile_gsd_m:g} m, the model reads {self.gsd_m:g} m; "
                    "import scenes at the model's resolution, or use --service (the service "
                    "resamples and returns polygons on the chip)",
                    str(chip),
                )
            values = scene.read()  # NaN = nodata: the model prepares it as every caller's
            scorer = getattr(self.model, "site_scorer", None)
            min_score = self.min_score
            if min_score is None:
                from training.engines.base import default_threshold

                min_score = default_threshold(self.model.info)
            # With a site scorer (the bundle's verifier) every site the model reports is
            # rescored before the threshold, as the service does.
            found = self.model.predict(values[None], 0.0 if scorer else min_score)[0]
            keep = [k for k, m in enumerate(found.masks) if m.any()]
            scores = [float(found.scores[k]) for k in keep]
            if scorer is not None and keep:
                from service.sites import rescore_masks

                scores = rescore_masks(scorer, scene, [found.masks[k] for k in keep], scores)
        return [
            Site(self.classes[int(found.classes[k])], mask=found.masks[k], score=s)
            for k, s in zip(keep, scores, strict=True)
            if s >= min_score
        ]


class ServicePredictor:
    """The gRPC detection service, through its client SDK."""

    def __init__(self, target: str, min_score: float | None = None, **config: Any) -> None:
        from service.client import DetectionClient, DetectionError
        from service.client.common import wait_until_serving

        self.client = DetectionClient(target, **config)
        self.min_score = min_score
        try:
            wait_until_serving(self.client, 600.0, f"the detection service at {target}")
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


LABEL_FIELDS = ("label", "class", "category", "type", "Label", "CLASS")
SKIP = "skip"


def parse_label_map(text: str | None) -> dict[str, str]:
    """'0=pit,1=skip,2=pond' -> {'0': 'pit', '1': 'skip', '2': 'pond'}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        value, _, cls = part.partition("=")
        if not _ or cls.strip().lower() not in (*CLASS_NAMES, SKIP):
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"--label-map entry {part!r} is not VALUE=pit|pond|skip (e.g. 0=pit,1=skip,2=pond)",
            )
        out[value.strip()] = cls.strip().lower()
    return out


class PolygonPredictor:
    """Existing polygons (any CRS) suggested on the chips they overlap, clipped to each chip.

    The class comes from ``label_field`` through ``label_map`` (value -> pit, pond or skip) or
    when its value is ``pit``/``pond`` itself; a label field holding other values is refused
    (naming them), never read as the default. Without a label field every polygon is ``label``.
    The score comes from ``score_field`` when numeric, else ``score``. Invalid shapes are
    repaired first. ``require_overlap``: polygons that touch none of the chips are an error
    (a wrong CRS or another area), raised by ``push_predictions`` before anything is written.
    """

    require_overlap = True

    def __init__(
        self,
        path: str | Path,
        label: str = "pit",
        score: float = 1.0,
        label_field: str | None = None,
        score_field: str | None = None,
        label_map: dict[str, str] | None = None,
    ) -> None:
        if label not in CLASS_NAMES:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"label must be one of {CLASS_NAMES}")
        features = read_features(path)
        self.path = str(path)
        self.label, self.score = label, score
        self.label_field, self.score_field = label_field, score_field
        self.label_map = {k: v for k, v in (label_map or {}).items()}
        self.classes = self._check_labels(features)
        keep = [self.classes[i] != SKIP for i in range(len(features))]
        self.source = Features(
            [g for g, k in zip(features.geometries, keep, strict=True) if k],
            [p for p, k in zip(features.properties, keep, strict=True) if k],
            features.crs,
        )
        self.classes = [c for c in self.classes if c != SKIP]
        if not any(g is not None and not g.is_empty for g in self.source.geometries):
            skipped = len(features) - len(self.source)
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"no polygons to suggest: the file has {len(features)} feature(s)"
                + (f", {skipped} skipped by --label-map" if skipped else "")
                + "; nothing was added",
                self.path,
            )
        self.model_version = f"polygons-{Path(path).stem}"
        self._by_crs: dict[str, tuple[shapely.STRtree, list, list]] = {}
        self._chips: list[BaseGeometry] = []  # chip footprints in WGS84, for the overlap check

    def _check_labels(self, features: Features) -> list[str]:
        """The class (or 'skip') of every feature; refuses unmapped label values."""
        props = features.properties
        if not self.label_field:
            if self.label_map:
                raise AsmSpotterError(Reason.INVALID_ARGUMENT, "--label-map needs --label-field")
            field = next((f for f in LABEL_FIELDS if props and f in props[0]), None)
            if field is not None:
                values = sorted({str(p.get(field)) for p in props})[:8]
                feedback.notice(
                    f"{self.path}: every polygon is suggested as {self.label!r} (--label); its "
                    f"field {field!r} holds {values}: use --label-field {field} "
                    "[--label-map VALUE=pit|pond|skip,...] to take classes from it"
                )
            return [self.label] * len(features)
        if props and self.label_field not in props[0]:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"no field {self.label_field!r}; the file has {sorted(props[0])}",
                self.path,
            )
        classes, unmapped = [], set()
        for p in props:
            raw = p.get(self.label_field)
            value = "" if raw is None else str(raw)
            cls = self.label_map.get(value) or (
                value.lower() if value.lower() in CLASS_NAMES else ""
            )
            if not cls:
                unmapped.add(value)
            classes.append(cls)
        if unmapped:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"field {self.label_field!r} holds values {sorted(unmapped)} that are not pit or "
                f"pond; map them with --label-map, e.g. "
                f"{','.join(f'{v}=pit' for v in sorted(unmapped)[:3])} (pit, pond or skip)",
                self.path,
            )
        return classes

    def _in_crs(self, crs: str) -> tuple[shapely.STRtree, list, list]:
        if crs not in self._by_crs:
            geoms, classes, props = [], [], []
            for geom, cls, prop in zip(
                self.source.geometries, self.classes, self.source.properties, strict=True
            ):
                if geom is None or geom.is_empty:
                    continue
                geom = shapely.force_2d(geom)
                if not geom.is_valid:
                    geom = shapely.make_valid(geom)
                geoms.append(reproject(geom, self.source.crs, crs))
                classes.append(cls)
                props.append(prop)
            self._by_crs[crs] = (
                shapely.STRtree(geoms),
                geoms,
                list(zip(classes, props, strict=True)),
            )
        return self._by_crs[crs]

    def _score(self, prop: dict[str, Any]) -> float:
        value = prop.get(self.score_field) if self.score_field else None
        return float(value) if isinstance(value, int | float) else self.score

    def predict(self, chip: Path, data: dict[str, Any]) -> list[Site]:
        tree, geoms, labelled = self._in_crs(data["crs"])
        transform, w, h = chip_transform(data), int(data["width"]), int(data["height"])
        frame = box(0, 0, w, h)
        footprint = to_map_space(frame, transform)
        self._chips.append(reproject(footprint, data["crs"], WGS84))
        sites = []
        for i in tree.query(footprint):
            px = to_pixel_space(geoms[int(i)], transform).intersection(frame)
            parts = getattr(px, "geoms", [px])
            polys = [p for p in parts if isinstance(p, Polygon | MultiPolygon)]
            if not polys:
                continue
            geom = shapely.union_all(polys)
            if geom.area >= MIN_AREA_PX:
                cls, prop = labelled[int(i)]
                sites.append(Site(cls, geom, score=self._score(prop)))
        return sites

    def no_overlap_error(self) -> AsmSpotterError:
        """Why no polygon landed on any chip, with both extents in degrees."""
        polys = [g for g in self.source.geometries if g is not None and not g.is_empty]
        have = reproject(shapely.box(*shapely.total_bounds(polys)), self.source.crs, WGS84)
        chips = shapely.union_all(self._chips)
        return AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"none of the {len(polys)} polygons overlaps any of the {len(self._chips)} chips "
            f"(polygons: {_extent(have)}; chips: {_extent(chips)}); check the file's area and "
            "CRS; nothing was added",
            self.path,
        )


def _extent(geom: BaseGeometry) -> str:
    x0, y0, x1, y1 = geom.bounds
    return f"lon {x0:.3f}..{x1:.3f}, lat {y0:.3f}..{y1:.3f}"


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

    Returns (tasks given a prediction, regions suggested). Safe to re-run. A predictor with
    ``require_overlap`` (existing polygons) adds nothing unless some region lands on a chip.
    """
    tasks = call("list tasks", ls.tasks.list, project=project_id, resolve_uri=False)
    todo = []
    for task in tasks:
        versions = {
            p.get("model_version") if isinstance(p, dict) else getattr(p, "model_version", None)
            for p in (task.predictions or [])
        }
        if predictor.model_version not in versions:
            todo.append(task)
    hold = getattr(predictor, "require_overlap", False)
    held: list[tuple[int, dict[str, Any]]] = []
    done = regions = 0
    for task in feedback.bar(todo, desc="predict", unit="task"):
        prediction = prediction_for(predictor, task.data, files_root)
        regions += len(prediction["result"])
        if hold:
            held.append((task.id, prediction))
            continue
        call("add a prediction", ls.predictions.create, task=task.id, **prediction)
        done += 1
    if hold and todo and regions == 0:
        raise predictor.no_overlap_error()  # type: ignore[attr-defined]
    for task_id, prediction in held:
        call("add a prediction", ls.predictions.create, task=task_id, **prediction)
        done += 1
    return done, regions


def files_root_default() -> Path | None:
    root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    return Path(root) if root else None
