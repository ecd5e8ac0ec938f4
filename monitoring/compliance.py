"""Concession compliance: is a site inside a concession, outside all, or in a protected area?

Rules: a site overlapping a protected area at all is ``protected_area`` (the gravest case); else a
site with at least ``inside_fraction`` of its area inside concessions is ``inside_concession``;
else ``outside_concessions``. Both overlapping fractions are reported. Inputs may be in any CRS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason
from imagery.vector import Features, read_features

NAME_FIELDS = ("name", "NAME", "id", "ID", "concession", "licence", "license")


@dataclass
class Zones:
    """Polygons of one kind (concessions or protected areas) in the working CRS."""

    geometries: list[BaseGeometry]
    names: list[str]

    @classmethod
    def load(cls, path: str | Path | None, crs: Any) -> Zones:
        if path is None:
            return cls([], [])
        return cls.from_features(read_features(path), crs)

    @classmethod
    def from_features(cls, features: Features, crs: Any) -> Zones:
        projected = features.to_crs(crs)
        geoms, names = [], []
        for k, (geom, props) in enumerate(
            zip(projected.geometries, projected.properties, strict=True)
        ):
            if geom is None or geom.is_empty:
                continue
            if geom.geom_type not in ("Polygon", "MultiPolygon"):
                raise AsmSpotterError(
                    Reason.INVALID_ARGUMENT, f"zone {k} is a {geom.geom_type}, not a polygon"
                )
            geoms.append(shapely.make_valid(geom) if not geom.is_valid else geom)
            names.append(next((str(props[f]) for f in NAME_FIELDS if props.get(f)), str(k + 1)))
        return cls(geoms, names)

    def overlap(self, geom: BaseGeometry) -> tuple[float, list[str]]:
        """Fraction of ``geom``'s area inside these zones, and the zones it touches."""
        if not self.geometries or geom.area <= 0:
            return 0.0, []
        hits = [
            k for k, z in enumerate(self.geometries) if z.intersects(geom) and not z.touches(geom)
        ]
        if not hits:
            return 0.0, []
        inside = shapely.union_all([self.geometries[k] for k in hits]).intersection(geom).area
        return min(1.0, float(inside / geom.area)), [self.names[k] for k in hits]


def classify(
    geom: BaseGeometry, concessions: Zones, protected: Zones, inside_fraction: float = 0.5
) -> dict[str, Any]:
    """Compliance fields of one site (geometry in the zones' CRS)."""
    c_frac, c_names = concessions.overlap(geom)
    p_frac, p_names = protected.overlap(geom)
    if p_frac > 0:
        status = "protected_area"
    elif c_frac >= inside_fraction:
        status = "inside_concession"
    else:
        status = "outside_concessions"
    return {
        "compliance": status,
        "concession_fraction": round(c_frac, 6),
        "protected_fraction": round(p_frac, 6),
        "concessions": ",".join(c_names),
        "protected_areas": ",".join(p_names),
    }


def is_alert(status: str, compliance: str) -> bool:
    """A new or grown site outside every concession or inside a protected area."""
    return status in ("new", "grown") and compliance in ("outside_concessions", "protected_area")
