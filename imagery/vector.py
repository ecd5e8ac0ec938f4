"""Vector files (GeoJSON, GeoPackage, Shapefile) in and out, through GDAL's OGR (pyogrio).

Geometries come back as shapely objects with their properties and CRS; no pandas needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84, as_crs, reproject

DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile"}


@dataclass
class Features:
    geometries: list[BaseGeometry]
    properties: list[dict[str, Any]]
    crs: CRS

    def __len__(self) -> int:
        return len(self.geometries)

    def to_crs(self, crs: Any) -> Features:
        return Features(
            [reproject(g, self.crs, crs) for g in self.geometries], self.properties, as_crs(crs)
        )


def read_features(path: str | Path, layer: str | int | None = None) -> Features:
    """All features of a vector file; geometries as drawn (check validity with shapely)."""
    path = Path(path)
    if not path.exists():
        raise AsmSpotterError(Reason.FILE_NOT_FOUND, "no such vector file", str(path))
    try:
        meta, _, wkb, fields = pyogrio.raw.read(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError and friends
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"not a readable vector file ({exc})", str(path)
        ) from exc
    geoms = list(shapely.from_wkb(wkb))
    names = list(meta["fields"])
    props = [
        {name: _plain(col[i]) for name, col in zip(names, fields, strict=True)}
        for i in range(len(geoms))
    ]
    declared = bool(meta.get("crs"))
    crs = as_crs(meta["crs"]) if declared else WGS84
    check_coordinates(geoms, crs, str(path), declared)
    return Features(geoms, props, crs)


# How far (degrees) a layer may reach beyond its projected CRS's area of use (e.g. a country
# spanning two UTM zones kept in one).
AREA_OF_USE_MARGIN_DEG = 3.0


def check_coordinates(
    geoms: Sequence[BaseGeometry | None], crs: CRS, name: str, declared: bool = True
) -> None:
    """Coordinates must fit the CRS: degrees within +-180/+-90 for a geographic CRS; inside the
    CRS's area of use (with a margin) for a projected one, and not degree-sized numbers there.

    Raises CRS_MISMATCH naming the extent, so a file read in the wrong CRS never becomes a
    silent wrong answer (every site "outside concessions").
    """
    present = [g for g in geoms if g is not None and not g.is_empty]
    if not present:
        return
    x0, y0, x1, y1 = (float(v) for v in shapely.total_bounds(present))
    if not all(np.isfinite((x0, y0, x1, y1))):
        raise AsmSpotterError(Reason.CRS_MISMATCH, "coordinates are not finite numbers", name)
    extent = f"x {x0:.6g}..{x1:.6g}, y {y0:.6g}..{y1:.6g}"
    fix = (
        "the file is read in its declared CRS (GeoJSON without a `crs` member: longitude/latitude "
        "degrees); if the numbers are in another CRS, declare it (e.g. `ogr2ogr -a_srs "
        "EPSG:32629 fixed.gpkg FILE`)"
        if declared
        else "the file declares no CRS, so it was read as EPSG:4326 degrees; declare its CRS "
        "(e.g. `ogr2ogr -a_srs EPSG:32629 fixed.gpkg FILE`)"
    )
    label = crs.to_string() if declared else "EPSG:4326 (assumed)"
    if crs.is_geographic:
        if x0 < -180 or x1 > 360 or y0 < -90 or y1 > 90 or (x1 > 180 and x0 < 0):
            raise AsmSpotterError(
                Reason.CRS_MISMATCH,
                f"coordinates ({extent}) are outside the range of {label} (longitude -180..180, "
                f"latitude -90..90); {fix}",
                name,
            )
        return
    if max(abs(x0), abs(x1)) <= 180 and max(abs(y0), abs(y1)) <= 90:
        raise AsmSpotterError(
            Reason.CRS_MISMATCH,
            f"coordinates ({extent}) look like degrees but {label} is in "
            f"{crs.axis_info[0].unit_name}s; {fix}",
            name,
        )
    use = crs.area_of_use
    if use is None:
        return
    with np.errstate(all="ignore"):
        corners = shapely.box(x0, y0, x1, y1).segmentize(max(x1 - x0, y1 - y0, 1) / 8)
        lonlat = reproject(corners, crs, WGS84)
    lx0, ly0, lx1, ly1 = lonlat.bounds
    m = AREA_OF_USE_MARGIN_DEG
    inside = (
        np.all(np.isfinite(lonlat.bounds))
        and lx0 >= use.west - m
        and lx1 <= use.east + m
        and ly0 >= use.south - m
        and ly1 <= use.north + m
    )
    if not inside:
        raise AsmSpotterError(
            Reason.CRS_MISMATCH,
            f"coordinates ({extent}) fall outside where {label} is valid ({use.name}: longitude "
            f"{use.west:g}..{use.east:g}, latitude {use.south:g}..{use.north:g}); {fix}",
            name,
        )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_features(
    path: str | Path,
    geometries: Sequence[BaseGeometry],
    properties: Sequence[dict[str, Any]],
    crs: Any = WGS84,
    layer: str | None = None,
    geometry_type: str | None = None,
) -> Path:
    """Write features; the driver follows the suffix (.geojson, .gpkg, .shp).

    Polygonal layers are written as MultiPolygon (one geometry type per layer, as GIS tools
    expect); give ``geometry_type`` to fix it for an empty layer.
    """
    path = Path(path)
    driver = DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"unknown vector format {path.suffix!r}", str(path)
        )
    names = sorted({k for p in properties for k in p})
    fields = [np.array([p.get(k) for p in properties], dtype=object) for k in names]
    for i, col in enumerate(fields):  # typed columns where all values share a type
        values = [v for v in col if v is not None]
        if values and all(isinstance(v, bool) for v in values):
            continue
        if values and all(isinstance(v, int) for v in values) and len(values) == len(col):
            fields[i] = col.astype(np.int64)
        elif values and all(isinstance(v, int | float) for v in values) and len(values) == len(col):
            fields[i] = col.astype(np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    kinds = {g.geom_type for g in geometries}
    if geometry_type is None:
        geometry_type = (
            "MultiPolygon" if kinds and kinds <= {"Polygon", "MultiPolygon"} else "Unknown"
        )
    pyogrio.raw.write(
        path,
        np.array(shapely.to_wkb(list(geometries)), dtype=object),
        fields,
        fields=names,
        geometry_type=geometry_type,
        promote_to_multi=geometry_type.startswith("Multi"),
        crs=as_crs(crs).to_wkt(),
        driver=driver,
        layer=layer or path.stem,
    )
    return path
