"""Batch outputs: per-tile GeoJSON files (atomic), and the combined GeoJSON + GeoPackage."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shapely.geometry import shape

from imagery.geometry import feature_collection
from imagery.vector import write_features

SITE_COLUMNS = [
    "site_id",
    "class",
    "score",
    "area_m2",
    "tile_id",
    "source",
    "model_name",
    "model_version",
    "weights_sha256",
]


def write_json_atomic(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def combine(
    result_files: Iterable[Path], geojson_path: Path, gpkg_path: Path | None, crs: str
) -> int:
    """Concatenate per-tile FeatureCollections into one GeoJSON and one GeoPackage layer."""
    features: list[dict[str, Any]] = []
    for path in result_files:
        features += json.loads(path.read_text())["features"]
    write_json_atomic(geojson_path, feature_collection(features, crs))
    if gpkg_path is not None:  # written beside, then moved: a reader never sees half a file
        tmp = gpkg_path.with_name(gpkg_path.stem + ".tmp.gpkg")
        write_features(
            tmp,
            [shape(f["geometry"]) for f in features],
            [{k: f["properties"].get(k) for k in SITE_COLUMNS} for f in features],
            crs,
            layer="sites",
            geometry_type="MultiPolygon",
        )
        os.replace(tmp, gpkg_path)
    return len(features)
