"""Label Studio JSON export -> training dataset: COCO + N-band chips + GeoJSON of all sites.

Label Studio's own COCO export numbers classes from 0 alphabetically, names files that are not our
chips and drops brush regions, so the COCO file is built here from the JSON export: category ids
``1 pit, 2 pond`` (``imagery.coco``), polygons converted from percent to pixels, brush RLE decoded
(holes kept as RLE), every image with its chip, CRS and transform; ``sites.geojson`` holds every
site once in EPSG:4326 (parts cut by chip edges merged, ``labeling.sites``). Train/val is split by
geography (whole scenes or map regions), never chip by chip, so validation chips are not
neighbours of training chips.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rasterio.transform import Affine
from shapely.geometry import MultiPolygon

from imagery import coco
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import (
    apply_affine,
    as_crs,
    feature_collection,
    mask_to_geometry,
    to_map_space,
)
from labeling.predict import chip_file
from labeling.project import call
from labeling.sites import SitePart, site_features
from labeling.validate import CleanSite, CleanTask, Issue, Report, validate_tasks


@dataclass
class ExportResult:
    folder: Path
    images: int
    annotations: int
    splits: dict[str, int]
    report: Report


def fetch_tasks(ls: Any, project_id: int) -> list[dict[str, Any]]:
    """Every task of the project with its annotations (Label Studio's JSON export)."""
    chunks = call(
        "export the project",
        lambda: b"".join(
            ls.projects.exports.download_sync(
                project_id, export_type="JSON", download_all_tasks=True
            )
        ),
    )
    return json.loads(chunks)


def _region_key(data: dict[str, Any], region_km: float) -> str:
    """The map cell (``region_km`` wide) holding the chip's centre, in the chip's CRS."""
    t = Affine(*data["transform"][:6])
    cx, cy = (float(v) for v in apply_affine(t, data["width"] / 2, data["height"] / 2))
    crs = as_crs(data["crs"])
    size = region_km * 1000 if crs.is_projected else region_km / 111.0
    return f"{crs.to_string()}:{math.floor(cx / size)}:{math.floor(cy / size)}"


def assign_splits(
    tasks: list[CleanTask],
    val_fraction: float,
    split_by: str,
    region_km: float,
    seed: int,
    report: Report,
) -> dict[int, str]:
    """task id -> train/val, whole groups (scenes or regions) at a time."""
    groups: dict[str, list[int]] = defaultdict(list)
    for t in tasks:
        data = t.task["data"]
        key = data.get("scene_id", "") if split_by == "scene" else _region_key(data, region_km)
        groups[key].append(t.task["id"])
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total, val, splits = len(tasks), 0, {}
    for n, key in enumerate(keys):
        to_val = val_fraction > 0 and n < len(keys) - 1 and val < val_fraction * total
        val += len(groups[key]) if to_val else 0
        for task_id in groups[key]:
            splits[task_id] = "val" if to_val else "train"
    if len(keys) < 2 and val_fraction > 0 and tasks:
        report.issues.append(
            _note(
                f"only one {split_by} ({keys[0] if keys else '-'}): "
                "no validation split; label more places or lower --region-km"
            )
        )
    return splits


def _note(detail: str) -> Issue:
    return Issue(-1, "", "split", "kept", detail)


def _site_map_geometry(site: CleanSite, transform: Affine) -> Any:
    if site.geometry is not None:
        return to_map_space(site.geometry, transform)
    return mask_to_geometry(site.mask, transform, simplify_px=0)


def _coco_annotation(ann_id: int, image_id: int, site: CleanSite, **extra: Any) -> dict:
    geom = site.geometry
    holes = geom is not None and any(
        p.interiors for p in (geom.geoms if isinstance(geom, MultiPolygon) else [geom])
    )
    if geom is None or holes:
        return coco.annotation(ann_id, image_id, site.mask, site.label, **extra)
    x0, y0, x1, y1 = geom.bounds
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": coco.category_id(site.label),
        "segmentation": coco.geometry_to_segmentation(geom, Affine.identity()),
        "area": float(geom.area),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "iscrowd": 0,
        **extra,
    }


def export_dataset(
    tasks: list[dict[str, Any]],
    out: str | Path,
    files_root: Path,
    val_fraction: float = 0.2,
    split_by: str = "region",
    region_km: float = 10.0,
    seed: int = 0,
    project: str = "",
    image_extra: dict[int, dict[str, Any]] | None = None,
) -> ExportResult:
    """Validate, then write ``annotations.json``, ``chips/``, ``sites.geojson`` and the report.
    ``image_extra``: more fields for the COCO image of a task id (e.g. its review)."""
    if split_by not in ("region", "scene"):
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, "split_by must be 'region' or 'scene'")
    out = Path(out)
    (out / "chips").mkdir(parents=True, exist_ok=True)
    clean, report = validate_tasks(tasks)
    present = []
    for t in clean:
        src = chip_file(t.task["data"], files_root)
        if src.is_file():
            present.append(t)
        else:
            report.add(t.task, "chip_missing", "dropped", f"no chip GeoTIFF at {src}")
    report.kept_tasks = len(present)
    splits = assign_splits(present, val_fraction, split_by, region_km, seed, report)
    images, annotations, parts = [], [], []
    for image_id, t in enumerate(present, start=1):
        data = t.task["data"]
        scene = str(data.get("scene_id", "scene"))
        name = f"chips/{scene}/{data.get('chip_id', t.task['id'])}.tif"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chip_file(data, files_root), out / name)
        transform = Affine(*data["transform"][:6])
        split = splits[t.task["id"]]
        images.append(
            coco.image_entry(
                image_id,
                name,
                int(data["width"]),
                int(data["height"]),
                data["crs"],
                transform,
                scene_id=scene,
                datetime=data.get("datetime") or None,
                split=split,
                task_id=t.task["id"],
                chip_id=data.get("chip_id"),
                **(image_extra or {}).get(t.task["id"], {}),
            )
        )
        for site in t.sites:
            ann_id = len(annotations) + 1
            annotations.append(
                _coco_annotation(
                    ann_id,
                    image_id,
                    site,
                    task_id=t.task["id"],
                    annotation_id=t.annotation,
                    source=site.kind,
                )
            )
            parts.append(
                SitePart(
                    _site_map_geometry(site, transform),
                    data["crs"],
                    site.label,
                    scene,
                    str(data.get("chip_id", t.task["id"])),
                    abs(transform.a),
                    ann_id,
                    {
                        "datetime": data.get("datetime") or None,
                        "task_id": t.task["id"],
                        "annotation_id": t.annotation,
                        "annotator": str(t.annotator),
                        "source": site.kind,
                        "split": split,
                    },
                )
            )
    doc = coco.dataset(
        images,
        annotations,
        project=project,
        exported=datetime.now(UTC).isoformat(),
        split_by=split_by,
        region_km=region_km,
        val_fraction=val_fraction,
    )
    (out / "annotations.json").write_text(json.dumps(doc))
    (out / "sites.geojson").write_text(json.dumps(feature_collection(site_features(parts))))
    report.write(out)
    counts = defaultdict(int)
    for img in images:
        counts[img["split"]] += 1
    return ExportResult(out, len(images), len(annotations), dict(counts), report)
