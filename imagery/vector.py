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
    crs = as_crs(meta["crs"]) if meta.get("crs") else WGS84
    return Features(geoms, props, crs)


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
