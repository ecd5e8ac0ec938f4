"""Ground sampling distance: a grid's pixel size in metres, and the grid a model should read.

A model is trained at one ground sampling distance (GSD; 10 m for Sentinel-2). A tile at another
GSD is not what it learned: ``plan_model_grid`` decides, for a tile and a model, whether the
tile is read as it is, resampled onto a grid of the model's GSD (GDAL's warper; averaging when
the tile is finer, bilinear otherwise; geographic tiles onto their UTM zone), or refused
(``GSD_MISMATCH``) because its pixels are so much coarser that the sites the model looks for
(a few 10 m pixels) are not in the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyproj import CRS as ProjCRS
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import calculate_default_transform

from imagery.errors import ImageryError, Reason

GSD_TOLERANCE = 0.10  # a tile within 10 % of the model's GSD (each axis) is read as it is
MAX_COARSER = 2.0  # refused when the tile's pixels are more than this many times the model's
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class GridCheck:
    """How a tile's pixels were matched to the model's ground sampling distance."""

    tile_gsd_m: float  # the tile's pixel size in metres (mean of x and y, at its centre)
    model_gsd_m: float
    resampled: bool  # read through the warper onto ``crs`` at ``model_gsd_m``
    crs: str  # the grid detection ran on
    notice: str  # one line for people; empty when the tile was read as it is


@dataclass(frozen=True)
class GridPlan:
    check: GridCheck
    crs: CRS | None = None  # target grid when resampling
    transform: Affine | None = None
    width: int = 0
    height: int = 0
    resampling: Resampling = Resampling.bilinear


def pixel_size_m(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """(x, y) pixel size in metres at the grid's centre, for projected and geographic CRSs."""
    px = math.hypot(transform.a, transform.d)
    py = math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        lon, lat = transform @ (width / 2, height / 2)
        lat = max(-89.0, min(89.0, lat))
        _, _, dx = _GEOD.inv(lon, lat, lon + px, lat)
        _, _, dy = _GEOD.inv(lon, lat, lon, lat + py)
        return abs(dx), abs(dy)
    factor = ProjCRS.from_user_input(crs.to_wkt()).axis_info[0].unit_conversion_factor
    return px * factor, py * factor


def _utm_zone(crs: CRS, transform: Affine, width: int, height: int) -> CRS:
    lon, lat = transform @ (width / 2, height / 2)
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def plan_model_grid(
    crs: CRS, transform: Affine, width: int, height: int, model_gsd_m: float, name: str
) -> GridPlan:
    """Read as is, resample onto a ``model_gsd_m`` grid, or refuse (GSD_MISMATCH)."""
    gx, gy = pixel_size_m(crs, transform, width, height)
    gsd = (gx + gy) / 2
    coarsest = max(gx, gy)
    if coarsest > model_gsd_m * MAX_COARSER:
        raise ImageryError(
            Reason.GSD_MISMATCH,
            f"pixels of {gx:.1f} x {gy:.1f} m are {coarsest / model_gsd_m:.1f} times the model's "
            f"{model_gsd_m:g} m: sites of a few {model_gsd_m:g} m pixels are not in the data "
            f"(tiles up to {model_gsd_m * MAX_COARSER:g} m are resampled); use imagery at "
            f"{model_gsd_m:g} m",
            name,
        )
    within = all(abs(g - model_gsd_m) <= GSD_TOLERANCE * model_gsd_m for g in (gx, gy))
    rotated = transform.b != 0 or transform.d != 0
    if within and not crs.is_geographic and not rotated:
        return GridPlan(GridCheck(round(gsd, 3), model_gsd_m, False, _crs_name(crs), ""))
    target = _utm_zone(crs, transform, width, height) if crs.is_geographic else crs
    left, bottom, right, top = _bounds(transform, width, height)
    dst_transform, dst_w, dst_h = calculate_default_transform(
        crs, target, width, height, left, bottom, right, top, resolution=model_gsd_m
    )
    finer = coarsest < model_gsd_m * (1 - GSD_TOLERANCE)
    why = f"{gx:.1f} x {gy:.1f} m pixels"
    if crs.is_geographic:
        why += f" in geographic {_crs_name(crs)}"
    notice = (
        f"resampled from {why} onto a {model_gsd_m:g} m grid in {_crs_name(target)} "
        f"({'average' if finer else 'bilinear'}), the model's ground sampling distance"
    )
    return GridPlan(
        GridCheck(round(gsd, 3), model_gsd_m, True, _crs_name(target), notice),
        target,
        dst_transform,
        dst_w,
        dst_h,
        Resampling.average if finer else Resampling.bilinear,
    )


def _bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    xs, ys = zip(
        *(transform @ (c, r) for c, r in ((0, 0), (width, 0), (0, height), (width, height))),
        strict=True,
    )
    return min(xs), min(ys), max(xs), max(ys)
