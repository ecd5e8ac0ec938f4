"""Geometry: pixel <-> map, instance mask <-> polygon, reprojection, area in m², GeoJSON.

The one implementation used by the generator, training, the service and labelling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from rasterio import features
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")


def as_crs(crs: Any) -> CRS:
    """Any CRS spelling (EPSG code, 'EPSG:32629', WKT, rasterio CRS) -> pyproj CRS."""
    if isinstance(crs, CRS):
        return crs
    if hasattr(crs, "to_wkt"):
        return CRS.from_wkt(crs.to_wkt())
    return CRS.from_user_input(crs)


def mask_to_geometry(
    mask: np.ndarray, transform: Affine, simplify_px: float = 0.5
) -> Polygon | MultiPolygon | None:
    """A boolean instance mask -> its outline in the transform's CRS, holes kept.

    Pixel edges are traced exactly (4-connectivity), then simplified with a tolerance of
    ``simplify_px`` pixels so the outline stays within pixel accuracy. None for an empty mask.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if not mask.any():
        return None
    polys = [
        shape(geom)
        for geom, value in features.shapes(mask, mask=mask.astype(bool), transform=transform)
        if value == 1
    ]
    geom = shapely.union_all(polys) if len(polys) > 1 else polys[0]
    if simplify_px > 0:
        simplified = geom.simplify(simplify_px * abs(transform.a), preserve_topology=True)
        if not simplified.is_empty and simplified.is_valid:
            geom = simplified
    return _polygonal(geom)


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    if geom.is_empty:
        return None
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(parts) if parts else None


def geometry_to_mask(
    geom: BaseGeometry, transform: Affine, shape_hw: tuple[int, int], all_touched: bool = False
) -> np.ndarray:
    """Rasterise a geometry onto a grid: bool mask, pixel centres inside (or touched)."""
    if geom is None or geom.is_empty:
        return np.zeros(shape_hw, bool)
    return features.rasterize(
        [(geom, 1)], out_shape=shape_hw, transform=transform, all_touched=all_touched, dtype="uint8"
    ).astype(bool)


def apply_affine(t: Affine, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply an affine transform to coordinate arrays."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    return t.a * xs + t.b * ys + t.c, t.d * xs + t.e * ys + t.f


def to_pixel_space(geom: BaseGeometry, transform: Affine) -> BaseGeometry:
    """Map coordinates -> (col, row) pixel coordinates of ``transform``'s grid."""
    inv = ~transform
    return shapely.transform(
        geom, lambda xy: np.column_stack(apply_affine(inv, xy[:, 0], xy[:, 1]))
    )


def to_map_space(geom: BaseGeometry, transform: Affine) -> BaseGeometry:
    """(col, row) pixel coordinates -> map coordinates."""
    return shapely.transform(
        geom, lambda xy: np.column_stack(apply_affine(transform, xy[:, 0], xy[:, 1]))
    )


def reproject(geom: BaseGeometry, src_crs: Any, dst_crs: Any) -> BaseGeometry:
    """Reproject a shapely geometry; axis order is always x/lon, y/lat."""
    src, dst = as_crs(src_crs), as_crs(dst_crs)
    if src == dst:
        return geom
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def area_m2(geom: BaseGeometry, crs: Any) -> float:
    """Area in m²: planar in a projected metre CRS, geodesic on WGS84 otherwise."""
    c = as_crs(crs)
    if c.is_projected and c.axis_info[0].unit_name in ("metre", "meter"):
        return float(geom.area)
    lonlat = reproject(geom, c, WGS84)
    return abs(float(_GEOD.geometry_area_perimeter(lonlat)[0]))


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS84 / UTM zone CRS containing a point."""
    zone = int((lon + 180) // 6) + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def pixel_to_map(
    transform: Affine, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres -> map x, y."""
    return apply_affine(transform, np.asarray(cols) + 0.5, np.asarray(rows) + 0.5)


def map_to_pixel(
    transform: Affine, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map x, y -> fractional (row, col)."""
    cols, rows = apply_affine(~transform, xs, ys)
    return rows, cols


def feature(geom: BaseGeometry, properties: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON Feature."""
    return {"type": "Feature", "geometry": mapping(geom), "properties": properties}


def feature_collection(
    features_: list[dict[str, Any]], crs: Any = WGS84, model: dict[str, str] | None = None
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection; non-WGS84 CRSs are named the GeoJSON 2008 way.

    WGS84 in either axis order (EPSG:4326, OGC:CRS84) is GeoJSON's default and is not named.
    ``model``: the identity of the model that produced the features (``model_name``,
    ``model_version``, ``weights_sha256``), kept as a foreign member so that a file with no
    feature still says which model found nothing.
    """
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": features_}
    if model:
        fc["model"] = dict(model)
    c = as_crs(crs)
    if not c.equals(WGS84, ignore_axis_order=True):
        fc["crs"] = {"type": "name", "properties": {"name": c.to_string()}}
    return fc


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    """Intersection over union of two geometries (0 when both are empty)."""
    union = a.union(b).area
    return float(a.intersection(b).area / union) if union > 0 else 0.0
