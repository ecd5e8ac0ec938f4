"""One acquisition over a watched area: the STAC items of one solar day, read onto the area's grid
with cloud, shadow and nodata masked per pixel (SCL), and what that view saw clear.

The tile (``monitoring.fetch.write_median`` of one day's items: the project's stacked tile, nodata
where SCL says cloud, cloud shadow, cirrus, defective or no data) is both what the model reads and
the record of which pixels were seen: ``ClearView`` answers "was this place seen clear?".
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from shapely.geometry.base import BaseGeometry

from imagery.geometry import WGS84, geometry_to_mask, reproject
from imagery.sensors import SENTINEL2_L2A
from monitoring.areas import WatchedArea
from monitoring.fetch import solar_day, write_median
from monitoring.stac_source import find_items


@dataclass
class Acquisition:
    """The not yet processed items of one solar day over an area."""

    area: str
    day: str  # ISO date (solar day at the area's longitude)
    items: list[Any] = field(default_factory=list)

    @property
    def id(self) -> str:
        return "+".join(sorted(i.id for i in self.items))

    @property
    def acquired(self) -> str:
        return min(i.datetime for i in self.items).isoformat()

    @property
    def published(self) -> str | None:
        """When the provider published the newest item (STAC ``published``/``created``)."""
        stamps = [i.properties.get("published") or i.properties.get("created") for i in self.items]
        stamps = [s for s in stamps if s]
        return max(stamps) if stamps else None


def new_acquisitions(area: WatchedArea, done: set[str]) -> list[Acquisition]:
    """Acquisitions over ``area`` from its last seen one (or ``since``) on, oldest first; items
    already processed are left out (so an interrupted pass picks up where it stopped)."""
    start = area.last_seen or f"{area.since}T00:00:00Z"
    if start.endswith("+00:00"):
        start = start[:-6] + "Z"
    src = area.source
    end = (datetime.now().date() + timedelta(days=2)).isoformat()
    items = find_items(src.stac_url, src.collection, area.geometry, start, end, src.max_cloud)
    days: dict[str, Acquisition] = {}
    lon = area.geometry.centroid.x
    for item in items:
        if item.id in done:
            continue
        day = solar_day(item.datetime, lon).isoformat()
        days.setdefault(day, Acquisition(area.name, day)).items.append(item)
    return [days[d] for d in sorted(days)]


def write_view(area: WatchedArea, acq: Acquisition, folder: Path) -> tuple[Path, float]:
    """The acquisition's masked tile under ``folder`` (written whole, then renamed into place,
    so a killed pass never leaves half a tile) and the share of the area seen clear."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{acq.day}_{_short(acq.id)}.tif"
    part = out.with_name(out.name + f".part{os.getpid()}")
    stats = write_median(
        acq.items,
        area.geometry,
        part,
        scene_id=acq.id,
        stac_url=area.source.stac_url,
        bands=area.source.bands or SENTINEL2_L2A.default_stack,
        resolution=area.source.resolution,
    )
    part.replace(out)
    return out, float(stats["valid_fraction"])


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class ClearView:
    """Which pixels of a view's tile were seen clear (every band valid)."""

    def __init__(self, tile: str | Path) -> None:
        with rasterio.open(tile) as src:
            self.crs, self.transform = src.crs, src.transform
            self.clear = (src.read() > 0).all(axis=0)

    def fraction(self, geom_wgs84: BaseGeometry) -> float:
        """Share of the place's pixels seen clear (0 when it lies off the tile)."""
        local = reproject(geom_wgs84, WGS84, self.crs)
        inside = geometry_to_mask(local, self.transform, self.clear.shape)
        if not inside.any():  # smaller than a pixel: the pixel under its centre
            c = local.representative_point()
            col, row = ~self.transform * (c.x, c.y)
            r, k = int(np.floor(row)), int(np.floor(col))
            h, w = self.clear.shape
            return float(self.clear[r, k]) if 0 <= r < h and 0 <= k < w else 0.0
        return float(self.clear[inside].mean())

    def sees(self, geom_wgs84: BaseGeometry, min_fraction: float) -> bool:
        return self.fraction(geom_wgs84) >= max(min_fraction, 1e-9)
