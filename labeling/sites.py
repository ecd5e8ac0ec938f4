"""Labelled sites on the map: parts of one site cut by chip edges become one GeoJSON feature.

A site crossing a chip border is labelled once per chip (and twice where edge chips overlap). On
the map those parts touch or overlap; parts of the same scene and label from different chips that
touch are merged, so ``sites.geojson`` holds each site once, with every chip and task it came from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from imagery import coco
from imagery.geometry import WGS84, area_m2, feature, reproject


@dataclass
class SitePart:
    geometry: BaseGeometry  # map coordinates of ``crs``
    crs: str
    label: str
    scene_id: str
    chip_id: str
    pixel_size: float
    coco_annotation_id: int
    properties: dict[str, Any]  # per part: task_id, annotation_id, annotator, source, split...


def _groups(parts: list[SitePart]) -> list[list[int]]:
    """Union-find over touching parts of different chips (same scene, CRS and label)."""
    parent = list(range(len(parts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(parts):
        buckets[(p.scene_id, p.crs, p.label)].append(i)
    for members in buckets.values():
        geoms = [parts[i].geometry for i in members]
        tree = shapely.STRtree(geoms)
        for a, i in enumerate(members):
            grown = geoms[a].buffer(parts[i].pixel_size * 0.01)
            for b in tree.query(grown, predicate="intersects"):
                j = members[int(b)]
                if parts[i].chip_id != parts[j].chip_id:
                    parent[root(i)] = root(j)
    grouped: dict[int, list[int]] = defaultdict(list)
    for i in range(len(parts)):
        grouped[root(i)].append(i)
    return list(grouped.values())


def site_features(parts: list[SitePart]) -> list[dict[str, Any]]:
    """One EPSG:4326 GeoJSON feature per site; list-valued properties name every part's source."""
    out = []
    for members in _groups(parts):
        group = [parts[i] for i in members]
        first = group[0]
        geom = shapely.union_all([p.geometry for p in group])
        props: dict[str, Any] = {
            "label": first.label,
            "category_id": coco.category_id(first.label),
            "area_m2": round(area_m2(geom, first.crs), 1),
            "scene_id": first.scene_id,
            "chip_ids": sorted({p.chip_id for p in group}),
        }
        for key in first.properties:
            unique = list(dict.fromkeys(p.properties[key] for p in group))
            props[key] = unique[0] if len(unique) == 1 else unique
        props["coco_annotation_ids"] = [p.coco_annotation_id for p in group]
        out.append(feature(reproject(geom, first.crs, WGS84), props))
    return out
