"""Reports a person looks at: an offline HTML map, alerts as CSV/GeoJSON, mined area over time."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from PIL import Image
from rasterio import warp
from rasterio.enums import Resampling
from rasterio.transform import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from imagery.geometry import WGS84, feature, feature_collection, reproject
from imagery.render import composite
from imagery.scene import Grid, iter_blocks, open_scene
from imagery.vector import Features, read_features, write_features
from monitoring.map_page import render

STATUS_COLORS = {
    "new": "#ff2d2d",
    "grown": "#ff9f1a",
    "unchanged": "#ffe14d",
    "split": "#c77dff",
    "merged": "#9aa0a6",
    "gone": "#6c757d",
    "obscured": "#5dade2",
    "detected": "#ff2d2d",
}

Site = tuple[BaseGeometry, dict[str, Any]]


def as_sites(sites: Any, crs: Any = WGS84) -> list[Site]:
    """A FeatureCollection dict, a GeoJSON path, ``Features``, or (geometry, properties) pairs ->
    WGS84 (geometry, properties) pairs."""
    if isinstance(sites, str | Path):
        sites = read_features(sites)
    if isinstance(sites, Features):
        crs = sites.crs
        sites = list(zip(sites.geometries, sites.properties, strict=True))
    elif isinstance(sites, dict):
        sites = sites.get("features", [])
    out = []
    for s in sites:
        if isinstance(s, dict):
            geom, props = shape(s["geometry"]), dict(s.get("properties") or {})
        elif isinstance(s, BaseGeometry):
            geom, props = s, {}
        else:
            geom, props = s[0], dict(s[1])
        out.append((reproject(geom, crs, WGS84), props))
    return out


def preview_rgba(tile: str | Path, max_px: int = 1600) -> tuple[np.ndarray, Grid]:
    """A true-colour picture of a scene at most ``max_px`` wide/high (alpha 0 on nodata), and
    the picture's grid (the scene's CRS, a coarser transform)."""
    with open_scene(tile) as scene:
        grid, rgb_bands = scene.grid, scene.sensor.rgb_bands
        step = max(1, -(-max(grid.width, grid.height) // max_px))
        h, w = -(-grid.height // step), -(-grid.width // step)
        if Path(tile).is_file():  # read a decimated copy (COG overviews) instead of every pixel
            idx = [scene.bands.index(b) + 1 for b in rgb_bands]
            with rasterio.open(tile) as src:
                data = src.read(
                    idx, out_shape=(3, h, w), masked=True, resampling=Resampling.nearest
                )
            values = data.astype(np.float32).filled(np.nan)
            bands: Sequence[str] = rgb_bands
        else:
            values = np.full((len(scene.bands), h, w), np.nan, np.float32)
            for win, block in iter_blocks(scene, 1024 - 1024 % step):
                r0, c0 = -(-int(win.row_off) // step), -(-int(win.col_off) // step)
                sub = block[
                    :, (-int(win.row_off)) % step :: step, (-int(win.col_off)) % step :: step
                ]
                values[:, r0 : r0 + sub.shape[1], c0 : c0 + sub.shape[2]] = sub
            bands = scene.bands
    rgb = composite(values, bands, rgb_bands)
    idx = [list(bands).index(b) for b in rgb_bands]
    alpha = np.isfinite(values[idx]).all(axis=0).astype(np.uint8) * 255
    transform = grid.transform * Affine.scale(grid.width / w, grid.height / h)
    return np.dstack([rgb, alpha]), Grid(grid.crs, transform, w, h)


def web_mercator(rgba: np.ndarray, grid: Grid) -> tuple[np.ndarray, list[list[float]]]:
    """Warp a picture onto Web Mercator (Leaflet's projection, so an image overlay lands
    exactly) and return it with its bounds [[south, west], [north, east]] in degrees."""
    dst_crs = "EPSG:3857"
    transform, width, height = warp.calculate_default_transform(
        grid.crs, dst_crs, grid.width, grid.height, *grid.bounds
    )
    out = np.zeros((4, height, width), np.uint8)
    for band in range(4):
        warp.reproject(
            np.ascontiguousarray(rgba[:, :, band]),
            out[band],
            src_transform=grid.transform,
            src_crs=grid.crs,
            dst_transform=transform,
            dst_crs=dst_crs,
            resampling=Resampling.nearest,
        )
    west, north = transform * (0, 0)
    east, south = transform * (width, height)
    box_wgs = reproject(shapely.box(west, south, east, north), dst_crs, WGS84)
    w, s, e, n = box_wgs.bounds
    return np.moveaxis(out, 0, -1), [[s, w], [n, e]]


def png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_data_uri(path: str | Path | None) -> str | None:
    """A PNG file as a data URI (None when there is none)."""
    if not path or not Path(path).is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _plain(props: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (round(v, 2) if isinstance(v, float) else v)
        for k, v in props.items()
        if isinstance(v, str | int | float | bool) or v is None
    }


def _collection(items: Iterable[Site], extra: Sequence[dict[str, Any]] | None = None) -> dict:
    features = []
    for k, (geom, props) in enumerate(items):
        merged = {**_plain(props), **(extra[k] if extra else {})}
        features.append(feature(geom, merged))
    return feature_collection(features)


def write_html_map(
    sites: Any,
    tile_path: str | Path | None,
    out_html: str | Path,
    *,
    sites_crs: Any = WGS84,
    concessions: Any = None,
    protected: Any = None,
    base_tiles: dict[str, str | Path] | None = None,
    alerts: Sequence[Site] | None = None,
    title: str = "ASM sites",
    max_px: int = 1600,
) -> Path:
    """Write a self-contained HTML map (Leaflet, inlined; ``monitoring.map_page``).

    ``sites``: GeoJSON FeatureCollection (dict or path), ``Features`` or (geometry, properties)
    pairs; properties ``status`` and ``date`` pick colour and date. ``tile_path``: the scene drawn
    as the picture; ``base_tiles`` maps dates to per-date scenes (one base layer each).
    ``alerts``: (geometry, properties) pairs; properties ``before_chip``/``after_chip`` (PNG
    paths) give the popup's before/after view, ``review``/``review_reason`` its review state.
    """
    site_list = as_sites(sites, sites_crs)
    zones = {
        name: as_sites(z) if z is not None else []
        for name, z in (("concessions", concessions), ("protected", protected))
    }
    alert_list = list(alerts or [])  # WGS84
    tiles = {d: t for d, t in (base_tiles or {}).items() if t}
    if tile_path and not tiles:
        tiles[""] = tile_path
    images: list[dict[str, Any]] = []
    seen: dict[str, tuple[str, list]] = {}  # each distinct tile rendered once
    for date, tile in sorted(tiles.items()):
        name = str(Path(tile).resolve())
        if name not in seen:
            rgba, grid = preview_rgba(tile, max_px)
            picture, bounds = web_mercator(rgba, grid)
            seen[name] = (png_data_uri(picture), bounds)
        url, bounds = seen[name]
        label = f"picture {date}" if date else f"picture {Path(tile).stem}"
        images.append({"date": date, "label": label, "url": url, "bounds": bounds})
    frame = [g for g, _ in site_list] + [g for z in zones.values() for g, _ in z]
    frame += [g for g, _ in alert_list]
    if images:
        (s0, w0), (n0, e0) = images[-1]["bounds"]
        frame.append(shapely.box(w0, s0, e0, n0))
    if not frame:
        raise ValueError("nothing to map: no sites, zones or tile")
    w, s, e, n = shapely.union_all([g.envelope for g in frame]).bounds
    chips = [
        {
            "before": file_data_uri(p.get("before_chip")),
            "after": file_data_uri(p.get("after_chip")),
        }
        for _, p in alert_list
    ]
    data = {
        "title": title,
        "images": images,
        "dates": sorted({str(p["date"]) for _, p in site_list if p.get("date")}),
        "sites": _collection(site_list),
        "alerts": _collection(
            [(g, {k: v for k, v in p.items() if not k.endswith("_chip")}) for g, p in alert_list],
            chips,
        ),
        "zones": {name: _collection(z) for name, z in zones.items()},
        "colors": STATUS_COLORS,
        "view": [[s, w], [n, e]],
    }
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return out


def mined_area_svg(series: Sequence[tuple[str, float]], out: str | Path) -> Path:
    """A line plot of mined area (hectares) per date as a small standalone SVG."""
    w, h, left, right, top, bottom = 640, 360, 90, 60, 30, 50
    ha = [a / 1e4 for _, a in series]
    top_value = max(ha + [1e-9]) * 1.1
    n = len(series)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (w - left - right) * (i / (n - 1) if n > 1 else 0.5)
        return x, h - bottom - (h - top - bottom) * v / top_value

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">Mined area over time</text>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
        f'<text x="16" y="{h / 2}" transform="rotate(-90 16 {h / 2})" '
        'text-anchor="middle">hectares</text>',
    ]
    for k in range(5):
        v = top_value * k / 4
        _, y = xy(0, v)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#ddd"/>'
        )
    pts = [xy(i, v) for i, v in enumerate(ha)]
    if pts:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#d62728" stroke-width="2"/>')
    for (x, y), (d, _), v in zip(pts, series, ha, strict=True):
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#d62728"/>')
        parts.append(f'<text x="{x:.1f}" y="{h - bottom + 18}" text-anchor="middle">{d}</text>')
        parts.append(f'<text x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle">{v:.1f} ha</text>')
    parts.append("</svg>")
    out = Path(out)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


ALERT_COLUMNS = (
    "site_id", "date", "status", "compliance", "area_m2", "previous_area_m2",
    "concession_fraction", "protected_fraction", "concessions", "protected_areas", "scene_id",
    "model_version", "weights_sha256", "evidence",
    # early warning (asmspotter watch): the alert's identity, state and times, and its review
    "alert_id", "state", "confidence", "acquired", "raised_at", "acquisition_to_alert_s",
    "found_to_alert_s", "review", "review_reason",
)  # fmt: skip


def write_alerts(alerts: Sequence[Site], out_dir: str | Path) -> tuple[Path, Path]:
    """alerts.csv and alerts.geojson (WGS84) of (geometry, properties) pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "alerts.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*ALERT_COLUMNS, "lon", "lat"])
        writer.writeheader()
        for geom, props in alerts:
            c = geom.representative_point()
            row = {k: props.get(k) for k in ALERT_COLUMNS}
            writer.writerow({**row, "lon": round(c.x, 6), "lat": round(c.y, 6)})
    geojson_path = write_features(
        out_dir / "alerts.geojson",
        [g for g, _ in alerts],
        [{k: p.get(k) for k in ALERT_COLUMNS} for _, p in alerts],
        WGS84,
    )
    return csv_path, geojson_path
