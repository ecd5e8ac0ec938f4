"""Label Studio regions <-> chip pixel space.

Label Studio stores polygon points in percent of the picture (0 = left/top edge, 100 = right/bottom
edge), so pixel = percent / 100 * size in the same corner-based pixel frame as rasterio's
``(col, row)``; brush regions are RLE of an RGBA picture (see ``labeling.brush``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon

from imagery.geometry import mask_to_geometry
from labeling import brush
from labeling.config import PREDICTION_FROM_NAME, PREDICTION_TO_NAME

POLYGON, BRUSH = "polygonlabels", "brushlabels"


@dataclass
class Site:
    """A pit or pond on a chip: outline in pixel (col, row) coordinates, or a mask."""

    label: str
    geometry: Polygon | MultiPolygon | None = None  # pixel space
    mask: np.ndarray | None = None  # bool [H, W]
    score: float | None = None
    kind: str = POLYGON


def polygon_from_points(points: list, width: int, height: int) -> Polygon:
    """Percent points -> pixel polygon as drawn (may be invalid; validation decides)."""
    xy = np.asarray(points, dtype=float).reshape(-1, 2) / 100.0 * (width, height)
    return Polygon(xy) if len(xy) >= 3 else Polygon()


def points_from_polygon(poly: Polygon, width: int, height: int) -> list[list[float]]:
    """Pixel polygon exterior -> percent points (no repeated closing point)."""
    xy = np.asarray(poly.exterior.coords)[:-1] / (width, height) * 100.0
    return np.round(xy, 4).tolist()


def _result(kind: str, from_name: str, to_name: str, width: int, height: int, value: dict) -> dict:
    return {
        "id": uuid.uuid4().hex[:10],
        "from_name": from_name,
        "to_name": to_name,
        "type": kind,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
    }


def polygon_results(
    geom: Polygon | MultiPolygon,
    label: str,
    width: int,
    height: int,
    score: float | None = None,
    from_name: str = PREDICTION_FROM_NAME,
    to_name: str = PREDICTION_TO_NAME,
) -> list[dict[str, Any]]:
    """One polygon region per part of a pixel-space geometry (Label Studio has no holes)."""
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    out = []
    for part in parts:
        if part.is_empty:
            continue
        value = {
            "points": points_from_polygon(part, width, height),
            "closed": True,
            POLYGON: [label],
        }
        res = _result(POLYGON, from_name, to_name, width, height, value)
        if score is not None:
            res["score"] = float(score)
        out.append(res)
    return out


def brush_result(
    mask: np.ndarray,
    label: str,
    score: float | None = None,
    from_name: str = "brush",
    to_name: str = PREDICTION_TO_NAME,
) -> dict[str, Any]:
    height, width = mask.shape
    value = {"format": "rle", "rle": brush.encode_mask(mask), BRUSH: [label]}
    res = _result(BRUSH, from_name, to_name, width, height, value)
    if score is not None:
        res["score"] = float(score)
    return res


def site_results(site: Site, width: int, height: int) -> list[dict[str, Any]]:
    """A predicted site as Label Studio results: polygons (easy to edit), or a brush mask when the
    site has holes (Label Studio polygons cannot have any)."""
    geom = site.geometry
    if geom is None and site.mask is not None:
        geom = mask_to_geometry(site.mask, Affine.identity())
    if geom is None or geom.is_empty:
        return []
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    if site.mask is not None and any(p.interiors for p in parts):
        return [brush_result(site.mask, site.label, site.score)]
    return polygon_results(geom, site.label, width, height, site.score)


def mask_geometry(mask: np.ndarray) -> Polygon | MultiPolygon | None:
    """A brush mask's exact pixel outline (holes kept)."""
    return mask_to_geometry(mask, Affine.identity(), simplify_px=0)


def clip_to_image(geom: Polygon | MultiPolygon, width: int, height: int) -> Any:
    return shapely.intersection(geom, shapely.box(0, 0, width, height))
