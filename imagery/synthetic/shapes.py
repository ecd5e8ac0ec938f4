"""Shapes in scene pixel space (x = column, y = row): real ASM outlines, meanders, fish-pond grids.

Pit and pond outlines come from the 449 hand-drawn West-Africa ASM polygons of the asm-map project
(gate-ens-asm/asm-map, commit 8db554a, CC BY 4.0), normalised to unit area by ``derive_assets.py``;
sizes follow their real area distribution (median 1.9 ha), shrunk to single pits/ponds.
"""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon

from imagery.synthetic.spectra import ASSETS

MIN_EXTENT_PX = 2
MAX_EXTENT_PX = 60


@cache
def outlines() -> tuple[list[np.ndarray], np.ndarray]:
    doc = json.loads((ASSETS / "shapes.json").read_text())
    return [np.asarray(o, np.float64) for o in doc["outlines"]], np.asarray(doc["area_ha"])


def _largest(geom: shapely.Geometry) -> Polygon | None:
    polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon) and not g.is_empty]
    return max(polys, key=lambda p: p.area) if polys else None


def real_outline(
    rng: np.random.Generator, area_px: float, center: tuple[float, float], jitter: float = 0.04
) -> Polygon:
    """A real ASM outline, rotated, stretched and jittered, with ``area_px`` around ``center``."""
    shapes, _ = outlines()
    xy = shapes[rng.integers(len(shapes))].copy()
    xy += rng.normal(0, jitter, xy.shape)
    poly = _largest(shapely.make_valid(Polygon(xy))) or Point(0, 0).buffer(0.56)
    poly = affinity.scale(poly, 1.0, rng.uniform(0.65, 1.5), origin=(0, 0))
    poly = affinity.rotate(poly, rng.uniform(0, 360), origin=(0, 0))
    poly = affinity.scale(poly, *(2 * [np.sqrt(area_px / max(poly.area, 1e-6))]), origin=(0, 0))
    x0, y0, x1, y1 = poly.bounds
    extent = max(x1 - x0, y1 - y0)
    if extent > MAX_EXTENT_PX - 1:  # keep the rasterised extent within 2..60 px
        poly = affinity.scale(poly, (MAX_EXTENT_PX - 1) / extent, (MAX_EXTENT_PX - 1) / extent)
    elif extent < MIN_EXTENT_PX + 1:
        poly = affinity.scale(poly, (MIN_EXTENT_PX + 1) / extent, (MIN_EXTENT_PX + 1) / extent)
    return affinity.translate(poly, center[0] - poly.centroid.x, center[1] - poly.centroid.y)


def site_area_px(rng: np.random.Generator) -> float:
    """Area of one pit/pond in 10 m pixels: a real site area, shrunk to a single excavation."""
    _, areas = outlines()
    return float(areas[rng.integers(len(areas))] * 100 * rng.uniform(0.08, 0.6))


def meander(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    length: float,
    bounds: tuple[float, float, float, float],
    sinuosity: float = 1.0,
    step: float = 3.0,
    wavelength: float = 120.0,
) -> LineString:
    """A meandering centre line: a sine-generated curve (Langbein & Leopold 1966) whose
    amplitude and wavelength drift, on a slowly wandering mean direction (radians). Rivers do not
    cross themselves (they cut off an oxbow instead), so a crossing curve is redrawn calmer."""
    for _ in range(6):
        line = _sine_curve(rng, start, heading, length, bounds, sinuosity, step, wavelength)
        if line.is_simple:
            break
        sinuosity *= 0.6
    return line


def _sine_curve(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    length: float,
    bounds: tuple[float, float, float, float],
    sinuosity: float,
    step: float,
    wavelength: float,
) -> LineString:
    x, y = start
    pts = [(x, y)]
    x0, y0, x1, y1 = bounds
    phase, drift = rng.uniform(0, 2 * np.pi), 0.0
    amp_max = min(1.25, 0.9 * sinuosity + 0.25)  # beyond ~1.3 rad loops close
    amp = float(np.clip(0.9 * sinuosity, 0.05, amp_max))
    lam = wavelength
    rand = rng.normal(0, 1, (int(length / step), 3))
    for dd, da, dl in rand:
        phase += 2 * np.pi * step / lam
        drift = 0.995 * drift + 0.004 * dd
        heading += drift
        amp = min(max(amp + 0.01 * da, 0.05), amp_max)
        lam = min(max(lam * (1 + 0.01 * dl), 0.5 * wavelength), 2 * wavelength)
        theta = heading + amp * math.sin(phase)
        x, y = x + step * math.cos(theta), y + step * math.sin(theta)
        pts.append((x, y))
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            break
    return LineString(pts)


def variable_buffer(
    rng: np.random.Generator, line: LineString, width: float, variation: float = 0.3
) -> list[Polygon]:
    """Buffer a line with a width that drifts along it: overlapping pieces of ~30 px (round joins),
    kept apart so that long rivers stay cheap to query and rasterise window by window."""
    xy = np.asarray(line.coords)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    per_piece = max(2, int(30 / max(float(seg.mean()) if len(seg) else 1.0, 1e-6)))
    starts = range(0, max(len(xy) - 1, 1), per_piece)
    pieces = [LineString(xy[i : i + per_piece + 1]) for i in starts if len(xy[i : i + 2]) == 2]
    steps = rng.normal(0, variation / 2, len(pieces))
    widths = np.clip(width * np.exp(np.cumsum(steps)), width * 0.6, width * 1.6)
    return list(shapely.buffer(pieces, widths / 2, quad_segs=4))


def oxbow(
    rng: np.random.Generator, center: tuple[float, float], radius: float, width: float
) -> Polygon:
    """A crescent of an abandoned meander loop."""
    start = rng.uniform(0, 2 * np.pi)
    span = rng.uniform(np.pi * 1.0, np.pi * 1.6)
    t = np.linspace(start, start + span, 40)
    r = radius * (1 + 0.15 * np.sin(3 * t + rng.uniform(0, 6)))
    arc = LineString(np.column_stack([center[0] + r * np.cos(t), center[1] + r * np.sin(t)]))
    return shapely.union_all(variable_buffer(rng, arc, width, 0.25))


def rectangle_grid(
    rng: np.random.Generator, center: tuple[float, float], angle: float
) -> list[Polygon]:
    """Fish ponds: a grid of regular rectangles separated by narrow dikes."""
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    pw, ph = rng.uniform(5, 16), rng.uniform(5, 16)
    dike = rng.uniform(1.2, 3.0)
    ponds = []
    for r in range(rows):
        for c in range(cols):
            if rows * cols > 2 and rng.random() < 0.12:
                continue  # a drained or never-dug cell
            x = c * (pw + dike) - cols * (pw + dike) / 2
            y = r * (ph + dike) - rows * (ph + dike) / 2
            box = Polygon([(x, y), (x + pw, y), (x + pw, y + ph), (x, y + ph)])
            box = affinity.rotate(box, angle, origin=(0, 0), use_radians=True)
            ponds.append(affinity.translate(box, *center))
    return ponds


def plot(rng: np.random.Generator, center: tuple[float, float], size: float) -> Polygon:
    """A farm plot: a rotated quadrilateral with skewed corners."""
    w, h = size, size * rng.uniform(0.4, 1.0)
    corners = np.array([(0, 0), (w, 0), (w, h), (0, h)]) - (w / 2, h / 2)
    corners += rng.normal(0, size * 0.08, corners.shape)
    poly = affinity.rotate(Polygon(corners), rng.uniform(0, 180), origin=(0, 0))
    return affinity.translate(poly, *center) if poly.is_valid else Point(center).buffer(size / 2)


def blob(rng: np.random.Generator, center: tuple[float, float], diameter: float) -> Polygon:
    """A smooth irregular patch (lakes, clearings): a real outline with rounded corners."""
    poly = real_outline(rng, np.pi * diameter**2 / 4, (0, 0), jitter=0.02)
    r = diameter * 0.08
    poly = _largest(poly.buffer(r, quad_segs=4).buffer(-r, quad_segs=4)) or poly
    scale = diameter / max(poly.bounds[2] - poly.bounds[0], poly.bounds[3] - poly.bounds[1], 1e-6)
    poly = affinity.scale(poly, scale, scale, origin=(0, 0))
    return affinity.translate(poly, *center)
