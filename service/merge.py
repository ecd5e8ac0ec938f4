"""Seam merging: detections from overlapping windows -> one site per object.

Each detection is a polygon in scene pixel coordinates (col, row) tagged with its window. Two
detections from different windows are the same object when, inside the rectangle both windows see,
their shapes overlap with IoU >= ``iou_threshold``: both windows saw the same pixels there, so
halves of a site cut by a seam, and a whole site seen twice, are recognised while neighbouring
sites stay apart. Merged sites take the union of their parts; their score is the area-weighted mean
of the parts' scores (stays in [0, 1] and is not inflated by being seen twice) and their class the
one with the largest area x score.

Windows arrive in row-major order, so a site whose bottom edge lies above the next window row can
no longer grow: ``pop_final`` hands such sites out while the scene is still being processed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

Box = tuple[int, int, int, int]  # col0, row0, col1, row1 (exclusive)


@dataclass
class Detection:
    geom: BaseGeometry  # scene pixel coordinates
    score: float
    class_index: int
    window: Box
    bounds: tuple[float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.bounds = tuple(self.geom.bounds)


@dataclass
class MergedSite:
    geom: BaseGeometry  # scene pixel coordinates
    score: float
    class_index: int
    parts: int


@dataclass
class _Cluster:
    members: list[Detection] = field(default_factory=list)
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def add(self, det: Detection) -> None:
        b = det.bounds
        if self.members:
            o = self.bounds
            b = (min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]), max(o[3], b[3]))
        self.bounds = b
        self.members.append(det)

    def absorb(self, other: _Cluster) -> None:
        for det in other.members:
            self.add(det)

    def site(self) -> MergedSite:
        members = self.members
        geom = (
            members[0].geom if len(members) == 1 else shapely.union_all([m.geom for m in members])
        )
        areas = [max(m.geom.area, 1e-9) for m in members]
        score = sum(a * m.score for a, m in zip(areas, members, strict=True)) / sum(areas)
        votes: dict[int, float] = {}
        for a, m in zip(areas, members, strict=True):
            votes[m.class_index] = votes.get(m.class_index, 0.0) + a * m.score
        return MergedSite(geom, float(score), max(votes, key=votes.__getitem__), len(members))


def _shared(a: Box, b: Box) -> Box | None:
    c0, r0, c1, r1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (c0, r0, c1, r1) if c0 < c1 and r0 < r1 else None


def _boxes_touch(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def same_object(a: Detection, b: Detection, iou_threshold: float) -> bool:
    """Do two detections from different windows show the same object? (see module doc)"""
    if a.window == b.window:
        return False
    shared = _shared(a.window, b.window)
    if shared is None or not _boxes_touch(a.bounds, b.bounds):
        return False
    region = box(*shared)
    pa, pb = a.geom.intersection(region), b.geom.intersection(region)
    if pa.is_empty or pb.is_empty:
        return False
    union = pa.union(pb).area
    return union > 0 and pa.intersection(pb).area / union >= iou_threshold


class SeamMerger:
    """Incremental merger; feed windows in row-major order."""

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self._active: list[_Cluster] = []

    def add(self, detections: list[Detection]) -> None:
        """Add one window's detections."""
        for det in detections:
            matches = [
                c
                for c in self._active
                if _boxes_touch(c.bounds, det.bounds)
                and any(same_object(det, m, self.iou_threshold) for m in c.members)
            ]
            if not matches:
                cluster = _Cluster()
                cluster.add(det)
                self._active.append(cluster)
                continue
            keep = matches[0]
            keep.add(det)
            for other in matches[1:]:  # the detection bridges several clusters: one object
                keep.absorb(other)
                self._active.remove(other)

    def pop_final(self, next_row: int) -> list[MergedSite]:
        """Sites no window starting at row >= ``next_row`` can reach."""
        final = [c for c in self._active if c.bounds[3] <= next_row]
        self._active = [c for c in self._active if c.bounds[3] > next_row]
        return [c.site() for c in final]

    def flush(self) -> list[MergedSite]:
        final, self._active = self._active, []
        return [c.site() for c in final]
