"""Helpers of the service tests: small stacked tiles with known sites, and a water-index detector.

``WaterIndexModel`` implements the ``DetectionModel`` interface with a fixed rule (NDWI above a
threshold, one instance per connected component), so tests of windowing, seam merging and
georeferencing have exact expectations; a few-step Mask R-CNN cannot give them. Server tests that
need the real engine use the training bundle fixture instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from pyproj import CRS
from rasterio.transform import from_origin
from shapely.geometry.base import BaseGeometry

from imagery.geometry import geometry_to_mask, to_map_space
from imagery.scene import Grid
from imagery.tiles import write_tile

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
SOIL = np.array([0.08, 0.11, 0.15, 0.25, 0.30, 0.22], np.float32)  # lateritic soil
WATER = np.array([0.06, 0.09, 0.08, 0.03, 0.02, 0.01], np.float32)  # turbid pond
UTM = CRS.from_epsg(32630)


def grid(size: int, x0: float = 600_000.0, y0: float = 700_000.0) -> Grid:
    return Grid(UTM, from_origin(x0, y0, 10.0, 10.0), size, size)


def make_tile(
    path: Path, size: int, ponds_px: list[BaseGeometry], nodata_all: bool = False
) -> tuple[Path, list[BaseGeometry]]:
    """A 6-band stacked tile of soil with water ponds (pixel-space shapes); returns the path and
    the ponds' map-space outlines."""
    g = grid(size)
    values = np.repeat(SOIL[:, None, None], size * size, axis=1).reshape(6, size, size)
    rng = np.random.default_rng(0)
    values = values * rng.uniform(0.97, 1.03, size=(1, size, size)).astype(np.float32)
    for geom in ponds_px:
        mask = geometry_to_mask(geom, from_origin(0, 0, 1, -1), (size, size))
        values[:, mask] = WATER[:, None]
    if nodata_all:
        values[:] = np.nan
    write_tile(path, values, g, BANDS, scene_id=path.stem, cog=False)
    return path, [to_map_space(p, g.transform) for p in ponds_px]


class WaterIndexModel:
    """NDWI > threshold, one instance per connected component, class ``pond``."""

    def __init__(self, chip_size: int = 64, threshold: float = 0.3, delay_s: float = 0.0) -> None:
        self.threshold = threshold
        self.delay_s = delay_s  # simulated compute time per batch (load and deadline tests)
        self.device = "cpu"
        self.calls: list[int] = []
        self.info = {
            "format": "asmspotter-bundle/1",
            "name": "water-index",
            "version": "0.0.1",
            "engine": "rule",
            "sensor": "sentinel2-l2a",
            "bands": list(BANDS),
            "chip_size": chip_size,
            "classes": ["pit", "pond"],
            "weights_sha256": "0" * 64,
            "metrics": {"val": {"segm_ap50": 1.0}},
            "created": "2026-01-01T00:00:00Z",
        }

    def predict(self, images: np.ndarray, score_threshold: float = 0.05) -> list:
        from training.engines.base import Instances

        self.calls.append(len(images))
        if self.delay_s:
            time.sleep(self.delay_s)
        green, nir = images[:, 1], images[:, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            ndwi = np.nan_to_num((green - nir) / (green + nir), nan=-1.0)
        out = []
        for img in ndwi:
            n, labels, stats, _ = cv2.connectedComponentsWithStats(
                (img > self.threshold).astype(np.uint8), connectivity=4
            )
            masks, boxes = [], []
            for k in range(1, n):
                if stats[k, cv2.CC_STAT_AREA] < 4:
                    continue
                x, y, w, h = stats[k, :4]
                masks.append(labels == k)
                boxes.append([x, y, x + w, y + h])
            k = len(masks)
            out.append(
                Instances(
                    masks=np.array(masks, bool).reshape(k, *img.shape),
                    scores=np.full(k, 0.9, np.float32),
                    classes=np.ones(k, np.int64),
                    boxes=np.array(boxes, np.float32).reshape(k, 4),
                )
            )
        return out


def write_raw(
    path: Path,
    data: np.ndarray,
    crs: CRS | None = UTM,
    bands: tuple[str, ...] | None = None,
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """A plain GeoTIFF written as given (for malformed inputs: no CRS, odd bands, NaNs)."""
    count, h, w = data.shape
    profile = {"nodata": nodata} if nodata is not None else {}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=count,
        dtype=data.dtype,
        crs=crs,
        transform=from_origin(600_000, 700_000, 10, 10),
        **profile,
    ) as dst:
        dst.write(data)
        for i, name in enumerate(bands or BANDS[:count], start=1):
            dst.set_band_description(i, name)
        if tags:
            dst.update_tags(**tags)
    return path


# Python code that makes `import torch` (and torchvision) fail, as on a client-only install.
BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def cli_command(*args: str) -> list[str]:
    """``python -c`` running ``asmspotter ARGS`` with torch blocked."""
    code = BLOCK_TORCH + f"from asmspotter.cli import main\nsys.exit(main({list(args)!r}))\n"
    return [sys.executable, "-c", code]


class LabelBandModel:
    """A perfect detector for seam tests on generator scenes: band B01 of the tile carries the
    truth as DN = 2 * instance id + (1 if pond else 0); each window gets one instance per id it
    sees, cut at the window's edge exactly as a real model's masks would be."""

    BANDS = ("B01", *BANDS)  # a different order than the file's: the service must reorder

    def __init__(self, chip_size: int) -> None:
        self.device = "cpu"
        self.info = {
            "name": "label-band",
            "version": "0.0.1",
            "engine": "rule",
            "sensor": "sentinel2-l2a",
            "bands": list(self.BANDS),
            "chip_size": chip_size,
            "classes": ["pit", "pond"],
            "weights_sha256": "1" * 64,
        }

    def predict(self, images: np.ndarray, score_threshold: float = 0.05) -> list:
        from training.engines.base import Instances

        out = []
        for img in images:
            codes = np.rint(np.nan_to_num(img[0]) * 10000).astype(np.int64)
            ids = [c for c in np.unique(codes) if c > 0]
            masks = np.array([codes == c for c in ids], bool).reshape(len(ids), *codes.shape)
            boxes = []
            for m in masks:
                rows, cols = np.nonzero(m)
                boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            out.append(
                Instances(
                    masks=masks,
                    scores=np.full(len(ids), 0.95, np.float32),
                    classes=np.array([c % 2 for c in ids], np.int64),
                    boxes=np.array(boxes, np.float32).reshape(len(ids), 4),
                )
            )
        return out


def write_label_band_tile(path: Path, scene: object) -> Path:
    """A generator scene's six bands plus its truth in B01 (see ``LabelBandModel``)."""
    codes = np.zeros(scene.labels.shape, np.float32)
    for inst in scene.instances:
        codes[scene.instance_mask(inst)] = (2 * inst.id + (inst.category == "pond")) / 10000
    codes[codes == 0] = np.nan  # background: nodata in the truth band only
    values = np.concatenate([scene.image, codes[None]])
    write_tile(path, values, scene.grid, (*BANDS, "B01"), scene_id=scene.scene_id, cog=False)
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
