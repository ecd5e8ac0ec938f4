"""Evidence packets: what an inspector needs to act on an alert, in one folder per site.

``<out>/<site_id>/``: ``before.png`` and ``after.png`` (true-colour chips around the site with its
outline, when the runs recorded a tile), ``site.geojson`` (the polygon, WGS84) and ``packet.json``
(scene IDs and dates, area, status, compliance, model version and weights hash), and
``index.html`` showing it all offline.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from rasterio.windows import Window
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError
from imagery.geometry import WGS84, feature, feature_collection, reproject, to_pixel_space
from imagery.render import composite
from imagery.scene import open_scene


def chip_png(
    tile: str | Path,
    geom_wgs84: BaseGeometry,
    out: str | Path,
    pad_px: int = 16,
    min_px: int = 64,
    zoom: int = 4,
) -> Path | None:
    """A true-colour chip of ``tile`` around the site with its outline; None if off the tile."""
    with open_scene(tile) as scene:
        g = scene.grid
        local = reproject(geom_wgs84, WGS84, g.crs)
        px = to_pixel_space(local, g.transform)
        c0, r0, c1, r1 = px.bounds
        pad = max(pad_px, int((min_px - max(c1 - c0, r1 - r0)) / 2) + 1)
        col0, row0 = max(0, int(c0) - pad), max(0, int(r0) - pad)
        col1, row1 = min(g.width, int(np.ceil(c1)) + pad), min(g.height, int(np.ceil(r1)) + pad)
        if col1 <= col0 or row1 <= row0:
            return None
        values = scene.read(Window(col0, row0, col1 - col0, row1 - row0))
        rgb = composite(values, scene.bands, scene.sensor.rgb_bands)
    img = Image.fromarray(rgb).resize((rgb.shape[1] * zoom, rgb.shape[0] * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for poly in getattr(px, "geoms", [px]):
        ring = [((x - col0) * zoom, (y - row0) * zoom) for x, y in poly.exterior.coords]
        draw.line(ring, fill=(255, 0, 255), width=2)
    out = Path(out)
    img.save(out)
    return out


def write_packet(
    out_dir: str | Path,
    site_id: str,
    geom_wgs84: BaseGeometry,
    facts: dict[str, Any],
    before_tile: str | None,
    after_tile: str | None,
    name: str | None = None,
) -> Path:
    """Write one alert's packet folder (``out_dir/<name or site_id>``) and return it."""
    folder = Path(out_dir) / (name or site_id)
    folder.mkdir(parents=True, exist_ok=True)
    chips: dict[str, str | None] = {}
    for name, tile in (("before", before_tile), ("after", after_tile)):
        path = None
        if tile and Path(tile).exists():
            try:
                path = chip_png(tile, geom_wgs84, folder / f"{name}.png")
            except AsmSpotterError:
                path = None
        chips[name] = path.name if path else None
    packet = {
        "site_id": site_id,
        **facts,
        "chips": chips,
        "polygon": mapping(geom_wgs84),
        "crs": "EPSG:4326",
    }
    (folder / "packet.json").write_text(json.dumps(packet, indent=2, default=str))
    (folder / "index.html").write_text(_page(site_id, facts, chips))
    (folder / "site.geojson").write_text(
        json.dumps(feature_collection([feature(geom_wgs84, {"site_id": site_id, **facts})]))
    )
    return folder


def _page(site_id: str, facts: dict[str, Any], chips: dict[str, str | None]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    imgs = "".join(
        f'<figure><img src="{c}" alt="{n}"><figcaption>{n}</figcaption></figure>'
        for n, c in chips.items()
        if c
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Alert {site_id}</title>"
        "<style>body{font:14px sans-serif}figure{display:inline-block;margin:8px}"
        "th{text-align:left;padding-right:12px}</style></head>"
        f"<body><h1>Alert: site {html.escape(site_id)}</h1>{imgs}<table>{rows}</table>"
        "</body></html>"
    )
