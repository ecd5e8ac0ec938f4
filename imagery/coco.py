"""COCO instance annotations that keep each image's georeference.

Images carry ``crs`` (WKT or EPSG string), ``transform`` (the 6 affine coefficients a, b, c, d, e,
f of the chip) and optional ``scene_id``/``datetime``; annotations carry a polygon segmentation
when the instance has no holes, or an uncompressed RLE otherwise (so holes survive). Pure numpy:
pycocotools reads these files, but the writers need no compiled COCO API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon

from imagery.geometry import geometry_to_mask, mask_to_geometry, to_pixel_space

CATEGORIES = [
    {"id": 1, "name": "pit", "supercategory": "asm"},
    {"id": 2, "name": "pond", "supercategory": "asm"},
]
CLASS_NAMES = [c["name"] for c in CATEGORIES]


def category_id(name: str) -> int:
    return CLASS_NAMES.index(name) + 1


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major run lengths, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        from pycocotools import mask as mask_utils  # compressed RLE needs the COCO API

        return mask_utils.decode(rle).astype(bool)
    values = np.zeros(len(counts), np.uint8)
    values[1::2] = 1
    return np.repeat(values, counts).reshape((h, w), order="F").astype(bool)


def mask_to_segmentation(mask: np.ndarray) -> list[list[float]] | dict[str, Any]:
    """Polygons in pixel coordinates (no holes) or RLE (holes present)."""
    geom = mask_to_geometry(mask, Affine.identity(), simplify_px=0)
    if geom is None:
        return []
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    if any(p.interiors for p in polys):
        return rle_encode(mask)
    return [np.asarray(p.exterior.coords).ravel().tolist() for p in polys]


def segmentation_to_mask(
    segmentation: list | dict[str, Any], height: int, width: int
) -> np.ndarray:
    """COCO polygons (pixel coordinates, pixel centres inside) or RLE -> bool mask [h, w]."""
    if isinstance(segmentation, dict):
        return rle_decode(segmentation)
    polys = []
    for ring in segmentation:
        xy = np.asarray(ring, dtype=float).reshape(-1, 2)
        if len(xy) >= 3:
            poly = Polygon(xy).buffer(0)  # tolerate self-touching rings as drawn by hand
            if not poly.is_empty:
                polys.append(poly)
    if not polys:
        return np.zeros((height, width), bool)
    return geometry_to_mask(shapely.union_all(polys), Affine.identity(), (height, width))


def geometry_to_segmentation(geom: Polygon | MultiPolygon, transform: Affine) -> list[list[float]]:
    """Map geometry -> COCO polygons in pixel coordinates (exteriors; use masks for holes)."""
    px = to_pixel_space(geom, transform)
    polys = list(px.geoms) if isinstance(px, MultiPolygon) else [px]
    return [np.asarray(p.exterior.coords).ravel().tolist() for p in polys]


def annotation(
    ann_id: int, image_id: int, mask: np.ndarray, category: str, **extra: Any
) -> dict[str, Any]:
    """One COCO annotation from a boolean instance mask."""
    rows, cols = np.nonzero(mask)
    x0, y0 = int(cols.min()), int(rows.min())
    bbox = [x0, y0, int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id(category),
        "segmentation": mask_to_segmentation(mask),
        "area": float(mask.sum()),
        "bbox": bbox,
        "iscrowd": 0,
        **extra,
    }


def image_entry(
    image_id: int,
    file_name: str,
    width: int,
    height: int,
    crs: str,
    transform: Affine,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": image_id,
        "file_name": file_name,
        "width": width,
        "height": height,
        "crs": crs,
        "transform": list(transform)[:6],
        **extra,
    }


def image_transform(image: dict[str, Any]) -> Affine:
    return Affine(*image["transform"][:6])


def dataset(images: list[dict], annotations: list[dict], **info: Any) -> dict[str, Any]:
    return {
        "info": {"description": "AIASMSpotter instances", **info},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }


def merge_datasets(parts: list[str | Path], out_dir: str | Path, **info: Any) -> Path:
    """One dataset of several: ``out_dir/annotations.json`` names every part's chips (paths
    relative to ``out_dir``, ids renumbered; each image keeps its ``split``). The chips stay
    where they are."""
    import json
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    annotations: list[dict] = []
    for part in parts:
        part = Path(part)
        data = json.loads((part / "annotations.json").read_text())
        ids: dict[int, int] = {}
        for img in data["images"]:
            ids[img["id"]] = len(images) + 1
            rel = os.path.relpath(part / img["file_name"], out)
            images.append({**img, "id": ids[img["id"]], "file_name": rel, "part": part.name})
        for ann in data["annotations"]:
            new_id = len(annotations) + 1
            annotations.append({**ann, "id": new_id, "image_id": ids[ann["image_id"]]})
    merged = dataset(images, annotations, parts=[str(p) for p in parts], **info)
    (out / "annotations.json").write_text(json.dumps(merged))
    return out
