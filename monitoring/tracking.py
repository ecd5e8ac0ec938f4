"""Track sites across dates: match each detection to last run's sites by overlap.

Rules (one implementation, used by every store backend):
- a pair (previous site, current detection) overlaps when their intersection covers at least
  ``min_overlap`` of the smaller of the two; with ``tolerance_m`` > 0 both are first grown by
  half of it, so sites drawn on slightly shifted grids (or grown next to last time's outline)
  still match;
- pairs are matched one-to-one, largest intersection first; a matched detection keeps the site ID;
- matched: ``grown`` when its area >= (1 + ``grow_fraction``) x the previous area, else
  ``unchanged``;
- unmatched detection: ``new`` when it overlaps no previous site, ``split`` when it does (a part of
  a site that broke up); unmatched previous site: ``gone`` when it overlaps no detection, ``merged``
  when it does (absorbed into a neighbour).
All geometry is in one projected metre CRS chosen by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import shapely
from shapely.geometry.base import BaseGeometry

# ``obscured``: not detected where the scene did not see the ground (cloud, shadow, nodata); the
# site keeps its last known state (set by the caller, see ``monitoring.monitor.record_run_in``).
PRESENT = ("new", "grown", "unchanged", "split", "obscured")
STATUSES = (*PRESENT, "gone", "merged")
ALERT_STATUSES = ("new", "grown")


@dataclass
class Tracked:
    """One site's state in a run. ``site_id`` is None for a site still to be numbered."""

    status: str
    geometry: BaseGeometry
    area_m2: float
    site_id: str | None = None
    previous_area_m2: float | None = None
    detection_index: int | None = None
    properties: dict = field(default_factory=dict)


def overlapping_pairs(
    previous: Sequence[BaseGeometry], current: Sequence[BaseGeometry], min_overlap: float
) -> list[tuple[float, int, int]]:
    """(intersection area, previous index, current index) of every overlapping pair."""
    if not previous or not current:
        return []
    tree = shapely.STRtree(list(previous))
    pairs = []
    for j, cur in enumerate(current):
        for i in tree.query(cur, predicate="intersects"):
            inter = previous[i].intersection(cur).area
            smaller = min(previous[i].area, cur.area)
            if inter > 0 and smaller > 0 and inter / smaller >= min_overlap:
                pairs.append((inter, int(i), j))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return pairs


def track(
    previous: Sequence[tuple[str, BaseGeometry]],
    current: Sequence[BaseGeometry],
    grow_fraction: float = 0.2,
    min_overlap: float = 0.1,
    tolerance_m: float = 0.0,
) -> list[Tracked]:
    """Classify ``current`` detections against ``previous`` (site_id, geometry) pairs."""
    prev_geoms = [g for _, g in previous]
    if tolerance_m > 0:
        grow = tolerance_m / 2
        pairs = overlapping_pairs(
            [g.buffer(grow) for g in prev_geoms], [g.buffer(grow) for g in current], min_overlap
        )
    else:
        pairs = overlapping_pairs(prev_geoms, current, min_overlap)
    prev_match: dict[int, int] = {}
    cur_match: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in prev_match and j not in cur_match:
            prev_match[i], cur_match[j] = j, i
    prev_touched = {i for _, i, _ in pairs}
    cur_touched = {j for _, _, j in pairs}
    out: list[Tracked] = []
    for j, geom in enumerate(current):
        area = float(geom.area)
        if j in cur_match:
            i = cur_match[j]
            before = float(prev_geoms[i].area)
            status = "grown" if area >= (1.0 + grow_fraction) * before else "unchanged"
            out.append(Tracked(status, geom, area, previous[i][0], before, j))
        else:
            status = "split" if j in cur_touched else "new"
            out.append(Tracked(status, geom, area, None, None, j))
    for i, (site_id, geom) in enumerate(previous):
        if i not in prev_match:
            status = "merged" if i in prev_touched else "gone"
            out.append(Tracked(status, geom, float(geom.area), site_id, float(geom.area)))
    return out


def mined_area_m2(geometries: Sequence[BaseGeometry]) -> float:
    """Area covered by a set of sites (overlaps counted once), in the geometries' units²."""
    return float(shapely.union_all(list(geometries)).area) if geometries else 0.0
