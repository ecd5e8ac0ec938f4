"""Write the project's stacked tile format (see docs/design.md), whole or block by block.

uint16 DN = reflectance x 10000 (offset-free), nodata 0, one band description per band, scale 1e-4
and ``ASMSPOTTER_*`` tags; Sentinel-1 stacks are float32 dB with NaN nodata. The result is a
cloud-optimised GeoTIFF: blocks are written to a tiled temporary GeoTIFF, then copied with GDAL's
COG driver (which builds overviews), so memory stays flat however large the tile.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from imagery.scaling import reflectance_to_dn
from imagery.scene import DATETIME_TAG, SCENE_ID_TAG, SENSOR_TAG, Grid
from imagery.sensors import get_sensor


class TileWriter:
    """Context manager: ``write(window, values)`` block by block, COG on close.

    ``values`` are physical units (float reflectance / dB, NaN = nodata) or ready DNs (uint16).
    """

    def __init__(
        self,
        path: str | Path,
        grid: Grid,
        bands: Sequence[str],
        sensor: str = "sentinel2-l2a",
        scene_id: str | None = None,
        datetime: str | None = None,
        cog: bool = True,
        extra_tags: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.sensor = get_sensor(sensor)
        self.optical = self.sensor.units == "reflectance"
        self.cog = cog
        self._tmp = self.path.with_name(self.path.name + ".tmp.tif") if cog else self.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        profile = {
            "driver": "GTiff",
            "width": grid.width,
            "height": grid.height,
            "count": len(bands),
            "dtype": "uint16" if self.optical else "float32",
            "nodata": 0 if self.optical else float("nan"),
            "crs": grid.crs,
            "transform": grid.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "predictor": 2,
            "BIGTIFF": "IF_SAFER",
        }
        self._dst = rasterio.open(self._tmp, "w", **profile)
        for i, band in enumerate(bands, start=1):
            self._dst.set_band_description(i, band)
        if self.optical:
            self._dst.scales = [self.sensor.scale] * len(bands)
            self._dst.offsets = [0.0] * len(bands)
        tags = {SENSOR_TAG: self.sensor.name, SCENE_ID_TAG: scene_id or self.path.stem}
        if datetime:
            tags[DATETIME_TAG] = datetime
        self._dst.update_tags(**tags, **(extra_tags or {}))

    def write(self, window: Window, values: np.ndarray) -> None:
        if self.optical and values.dtype != np.uint16:
            nodata = np.isnan(values)
            values = reflectance_to_dn(np.nan_to_num(values, nan=0.0))
            values[nodata] = 0
        self._dst.write(values.astype(self._dst.dtypes[0], copy=False), window=window)

    def close(self) -> None:
        if self._dst.closed:
            return
        self._dst.close()
        if self.cog:
            rasterio.shutil.copy(
                self._tmp,
                self.path,
                driver="COG",
                compress="DEFLATE",
                predictor="2",
                blocksize=512,
                overview_resampling="average",
                BIGTIFF="IF_SAFER",
                NUM_THREADS=str(os.cpu_count() or 1),
            )
            self._tmp.unlink()

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and not self._dst.closed:
            self._dst.close()
            self._tmp.unlink(missing_ok=True)
            return
        self.close()


def write_tile(
    path: str | Path,
    values: np.ndarray,
    grid: Grid,
    bands: Sequence[str],
    sensor: str = "sentinel2-l2a",
    scene_id: str | None = None,
    datetime: str | None = None,
    cog: bool = True,
    extra_tags: dict[str, Any] | None = None,
) -> Path:
    """Write a whole in-memory stack [C,H,W] (reflectance/dB floats or uint16 DN) as a tile."""
    with TileWriter(path, grid, bands, sensor, scene_id, datetime, cog, extra_tags) as writer:
        writer.write(Window(0, 0, grid.width, grid.height), values)
    return Path(path)
