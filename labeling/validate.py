"""Check Label Studio annotations before export: every repair and every drop is listed.

Task level: no annotation (unlabelled), skipped, several annotations (ground truth wins, else the
latest; disagreement is reported as a conflict), no regions (kept as a negative). Region level:
unknown label or tool, fewer than 3 points or no area (degenerate), self-intersecting (repaired
with ``make_valid``), partly or wholly outside the picture (clipped or dropped), picture size not
the chip's, undecodable or empty brush, smaller than a pixel, the same site drawn twice (e.g. on
both views).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import shapely
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon

from imagery.coco import CLASS_NAMES
from imagery.errors import AsmSpotterError
from imagery.geometry import geometry_to_mask
from labeling import brush
from labeling.regions import BRUSH, POLYGON, clip_to_image, polygon_from_points

AGREEMENT_IOU = 0.5  # annotations of one task whose union masks overlap less than this conflict
DUPLICATE_IOU = 0.9  # two regions of one annotation with the same label and this overlap


@dataclass
class Issue:
    task: int
    chip_id: str
    problem: str
    action: str  # repaired | dropped | kept | resolved
    detail: str
    annotation: int | None = None
    region: str | None = None


@dataclass
class CleanSite:
    label: str
    mask: np.ndarray  # bool [H, W]
    geometry: Polygon | MultiPolygon | None  # pixel space; None for brush regions
    kind: str
    region: str


@dataclass
class CleanTask:
    task: dict[str, Any]
    annotation: int | None
    annotator: Any
    sites: list[CleanSite]


@dataclass
class Report:
    issues: list[Issue] = field(default_factory=list)
    tasks: int = 0
    kept_tasks: int = 0
    kept_sites: int = 0

    def add(self, task: dict, problem: str, action: str, detail: str, **where: Any) -> None:
        chip = (task.get("data") or {}).get("chip_id", "")
        self.issues.append(Issue(task.get("id", -1), chip, problem, action, detail, **where))

    def counts(self) -> dict[str, int]:
        return dict(Counter(f"{i.problem}:{i.action}" for i in self.issues))

    def dropped(self) -> list[Issue]:
        return [i for i in self.issues if i.action == "dropped"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "kept_tasks": self.kept_tasks,
            "kept_sites": self.kept_sites,
            "counts": self.counts(),
            "issues": [asdict(i) for i in self.issues],
        }

    def to_markdown(self) -> str:
        lines = [
            "# Validation report",
            "",
            f"{self.tasks} tasks read, {self.kept_tasks} kept, {self.kept_sites} sites kept.",
            "",
            "| problem | action | count |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k.split(':')[0]} | {k.split(':')[1]} | {v} |"
            for k, v in sorted(self.counts().items())
        ]
        lines += [
            "",
            "| task | chip | annotation | region | problem | action | detail |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {i.task} | {i.chip_id} | {i.annotation or ''} | {i.region or ''} | {i.problem} "
            f"| {i.action} | {i.detail} |"
            for i in self.issues
        ]
        return "\n".join(lines) + "\n"

    def write(self, folder: Any) -> None:
        (folder / "validation_report.json").write_text(json.dumps(self.to_dict(), indent=1))
        (folder / "validation_report.md").write_text(self.to_markdown())


def _label(result: dict[str, Any]) -> str | None:
    labels = (result.get("value") or {}).get(result.get("type", ""), [])
    return labels[0] if isinstance(labels, list) and len(labels) == 1 else None


def _polygon_site(
    result: dict, task: dict, label: str, w: int, h: int, report: Report, where: dict
) -> CleanSite | None:
    points = (result.get("value") or {}).get("points") or []
    # Percent units are independent of the picture's size, so size mismatches need no repair.
    poly = polygon_from_points(points, w, h)
    distinct = {tuple(np.round(p, 6)) for p in np.asarray(points, float).reshape(-1, 2)}
    geom: Any = poly
    if len(distinct) >= 3 and not poly.is_valid:
        fixed = shapely.make_valid(poly)
        parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon) and g.area]
        geom = shapely.union_all(parts) if parts else Polygon()
        if parts:
            report.add(
                task,
                "self_intersecting",
                "repaired",
                f"{shapely.is_valid_reason(poly)}; made valid as {len(parts)} part(s) "
                f"of {geom.area:.1f} px",
                **where,
            )
    if len(distinct) < 3 or geom.area <= 0:
        report.add(
            task, "degenerate", "dropped", f"{len(distinct)} distinct points, no area", **where
        )
        return None
    inside = clip_to_image(geom, w, h)
    if inside.is_empty or inside.area <= 0:
        report.add(task, "outside_image", "dropped", "region lies outside the picture", **where)
        return None
    if inside.area < geom.area - 1e-6:
        report.add(
            task,
            "outside_image",
            "repaired",
            f"clipped to the picture: {geom.area:.1f} -> {inside.area:.1f} px",
            **where,
        )
        parts = [g for g in getattr(inside, "geoms", [inside]) if isinstance(g, Polygon)]
        geom = shapely.union_all(parts)
    mask = geometry_to_mask(geom, Affine.identity(), (h, w))
    if not mask.any():
        report.add(
            task, "too_small", "dropped", f"area {geom.area:.2f} px covers no pixel centre", **where
        )
        return None
    return CleanSite(label, mask, geom, POLYGON, where.get("region") or "")


def _brush_site(
    result: dict, task: dict, label: str, w: int, h: int, report: Report, where: dict
) -> CleanSite | None:
    rw, rh = result.get("original_width", w), result.get("original_height", h)
    if (rw, rh) != (w, h):
        report.add(
            task,
            "size_mismatch",
            "dropped",
            f"brush drawn on a {rw}x{rh} picture, the chip is {w}x{h}",
            **where,
        )
        return None
    try:
        mask = brush.decode_mask((result.get("value") or {}).get("rle") or b"", h, w)
    except AsmSpotterError as exc:
        report.add(task, "bad_rle", "dropped", exc.detail, **where)
        return None
    if not mask.any():
        report.add(task, "empty_mask", "dropped", "brush region paints no pixel", **where)
        return None
    return CleanSite(label, mask, None, BRUSH, where.get("region") or "")


def _sites(annotation: dict, task: dict, report: Report) -> list[CleanSite]:
    data = task.get("data") or {}
    w, h = int(data.get("width", 0)), int(data.get("height", 0))
    sites: list[CleanSite] = []
    for n, result in enumerate(annotation.get("result") or []):
        where = {"annotation": annotation.get("id"), "region": str(result.get("id") or n)}
        kind = result.get("type")
        if kind not in (POLYGON, BRUSH):
            report.add(task, "unsupported_tool", "dropped", f"region type {kind!r}", **where)
            continue
        label = _label(result)
        if label not in CLASS_NAMES:
            report.add(
                task,
                "unknown_label",
                "dropped",
                f"label {label!r} is not one of {CLASS_NAMES}",
                **where,
            )
            continue
        make = _polygon_site if kind == POLYGON else _brush_site
        site = make(result, task, label, w, h, report, where)
        if site is None:
            continue
        twin = next(
            (s for s in sites if s.label == label and _iou(s.mask, site.mask) >= DUPLICATE_IOU),
            None,
        )
        if twin is not None:
            report.add(
                task,
                "duplicate",
                "dropped",
                f"same {label} as region {twin.region} (IoU >= {DUPLICATE_IOU})",
                **where,
            )
            continue
        sites.append(site)
    return sites


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _union(sites: list[CleanSite], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, bool)
    for s in sites:
        out |= s.mask
    return out


def _annotator(annotation: dict) -> Any:
    who = annotation.get("completed_by")
    return who.get("email", who.get("id")) if isinstance(who, dict) else who


def validate_tasks(tasks: list[dict[str, Any]]) -> tuple[list[CleanTask], Report]:
    """Clean tasks (one chosen annotation each, valid sites) and the report of what changed."""
    report = Report(tasks=len(tasks))
    clean: list[CleanTask] = []
    for task in tasks:
        annotations = task.get("annotations") or []
        if not annotations:
            report.add(task, "unlabelled", "dropped", "no annotation yet")
            continue
        done = [a for a in annotations if not a.get("was_cancelled")]
        skipped = [a for a in annotations if a.get("was_cancelled")]
        if not done:
            report.add(
                task,
                "skipped",
                "dropped",
                f"skipped by {sorted({str(_annotator(a)) for a in skipped})}",
            )
            continue
        for a in skipped:
            report.add(
                task,
                "skipped",
                "kept",
                "one annotator skipped, another labelled",
                annotation=a.get("id"),
            )
        data = task.get("data") or {}
        shape = (int(data.get("height", 0)), int(data.get("width", 0)))
        candidates = [(a, _sites(a, task, report)) for a in done]
        ground = [c for c in candidates if c[0].get("ground_truth")]
        chosen = (ground or sorted(candidates, key=lambda c: c[0].get("updated_at") or ""))[-1]
        if len(candidates) > 1:
            _compare(task, candidates, chosen, bool(ground), shape, report)
        annotation, sites = chosen
        if not sites:
            report.add(
                task,
                "empty",
                "kept",
                "no regions: kept as a negative chip",
                annotation=annotation.get("id"),
            )
        clean.append(CleanTask(task, annotation.get("id"), _annotator(annotation), sites))
        report.kept_sites += len(sites)
    report.kept_tasks = len(clean)
    return clean, report


def _compare(
    task: dict,
    candidates: list,
    chosen: tuple,
    by_ground_truth: bool,
    shape: tuple,
    report: Report,
) -> None:
    ref_mask = _union(chosen[1], shape)
    ref_counts = Counter(s.label for s in chosen[1])
    rule = "ground truth" if by_ground_truth else "latest"
    for annotation, sites in candidates:
        if annotation is chosen[0]:
            continue
        overlap = _iou(ref_mask, _union(sites, shape))
        counts = Counter(s.label for s in sites)
        agree = overlap >= AGREEMENT_IOU and counts == ref_counts
        report.add(
            task,
            "multiple_annotations" if agree else "conflict",
            "resolved",
            f"annotation {annotation.get('id')} by {_annotator(annotation)} "
            f"({dict(counts)}) vs kept {chosen[0].get('id')} by {_annotator(chosen[0])} "
            f"({dict(ref_counts)}), mask IoU {overlap:.2f}; kept the {rule}",
            annotation=annotation.get("id"),
        )
