"""Mining clusters: pits and ponds along rivers and streams, on halos of spoil and tailings.

Real ASM clusters along rivers (Asner et al. 2013, PNAS 110:18454; Lobo et al. 2018, Remote Sens.
10:1178; Caballero Espejo et al. 2018, Remote Sens. 10:1903): excavations and sediment-laden ponds
packed along a stretch of river or stream, separated by narrow berms, sometimes in a row along the
stream, inside a halo of bare spoil and tailings fringed by felled and regrowing vegetation.
Outlines and sizes come from real hand-drawn ASM polygons (``shapes.real_outline``).
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import substring

from imagery.synthetic import shapes
from imagery.synthetic.layout import Canvas, River, RiverIndex, Site, point_and_normal

EXTENT_SPREAD = 0.5  # log-normal spread of a calibrated cluster's extent
STREAM_SHARE = 0.6  # calibrated clusters on a small stream of their own rather than a mapped river


def draw_mining(
    cv: Canvas, clusters: int, rivers: list[River], water: RiverIndex, valid: Polygon
) -> list[Site]:
    """``clusters`` clusters on river stretches inside ``valid``; returns the labelled sites."""
    rng = cv.rng
    sites: list[Site] = []
    for cluster in range(clusters):
        # Calibrated: most Amazon garimpos work small forest streams (igarapes), not the big river.
        own_stream = cv.pal.calibrated and rng.random() < STREAM_SHARE
        for _ in range(0 if own_stream else 20):  # a river stretch inside the valid area
            river = rivers[rng.integers(len(rivers))]
            inside = river.line.intersection(valid)
            if inside.length > 10:
                break
        else:  # no river there: mine a small stream of its own
            river = _new_stream(cv, valid, water)
            if river is None:
                continue
            rivers.append(river)
            inside = river.line.intersection(valid)
        parts = list(getattr(inside, "geoms", [inside]))
        part = max(parts, key=lambda g: g.length * rng.random())
        if isinstance(part, LineString) and part.length >= 5:
            _add_cluster(cv, sites, cluster, part, river.width, water)
    return sites


def _new_stream(cv: Canvas, valid: Polygon, water: RiverIndex) -> River | None:
    """A small stream starting inside ``valid`` (painted and indexed like the other rivers)."""
    rng = cv.rng
    x0, y0, x1, y1 = valid.bounds
    for _ in range(50):
        start = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if valid.contains(start):
            break
    else:
        return None
    width = rng.uniform(1.5, 3.5)
    line = shapes.meander(
        rng,
        (start.x, start.y),
        rng.uniform(0, 2 * np.pi),
        rng.uniform(150, 400),
        cv.bounds,
        rng.uniform(0.2, 1.0),
        2.0,
        wavelength=rng.uniform(30, 90),
    )
    pieces = shapes.variable_buffer(rng, line, width, 0.2)
    # a mined stream runs turbid with the spoil (Lobo et al. 2015)
    kind = rng.choice(["river_white", "river_black"], p=[0.85, 0.15] if cv.pal.calibrated else None)
    a, b = cv.pal.draw(kind), cv.pal.draw(kind, "sand", (0.0, 0.15))
    for piece in pieces:
        cv.layers["river"].add(piece, a, b, 0.3)
    water.add(pieces)
    return River(line, pieces, width)


def _add_cluster(
    cv: Canvas,
    sites: list[Site],
    cluster: int,
    line: LineString,
    width_px: float,
    water: RiverIndex,
) -> None:
    """Pits and ponds packed along a river stretch, separated by berms, on a tailings halo."""
    rng, pal, layers = cv.rng, cv.pal, cv.layers
    extent = cv.style.mine_extent
    if pal.calibrated:  # clusters differ in size around the fitted extent
        extent *= float(np.exp(rng.normal(0, EXTENT_SPREAD)))
    isolated = rng.random() < 0.2
    length = extent * (rng.uniform(5, 25) if isolated else rng.uniform(40, 260))
    start = rng.uniform(0, max(line.length - length, 1.0))
    stretch = substring(line, start, start + length)
    if stretch.is_empty or stretch.length < 1:
        return
    spread = extent * (rng.uniform(3, 8) if isolated else rng.uniform(10, 40))
    lo, hi = (1, 4) if isolated else (6, 14 + int(length / 6))
    if extent != 1.0:  # a smaller cluster holds fewer pits and ponds
        lo, hi = max(1, round(lo * extent)), max(2, round(hi * extent))
    n_sites = int(rng.integers(lo, hi))
    in_row = not isolated and rng.random() < 0.35
    pond_share = rng.uniform(0.4, 0.9)  # active clusters are pit-rich, abandoned ones pond-rich
    rivers = water.near(stretch.buffer(spread * 4 + width_px + 80))
    keep_out = rivers.buffer(1.0)
    placed: list[Polygon] = []
    for k in range(n_sites):
        for _ in range(10):  # keep sites out of the channel and mostly apart (berms)
            if in_row:  # a row of ponds along the stream
                d = stretch.length * (k + rng.uniform(0.2, 0.8)) / n_sites
                p, normal = point_and_normal(rng, stretch, d)
                off = width_px / 2 + rng.uniform(2, 10)
            else:
                p, normal = point_and_normal(rng, stretch)
                off = width_px / 2 + 2 + abs(rng.normal(0, spread))
            center = (p.x + normal[0] * off, p.y + normal[1] * off)
            geom = shapes.real_outline(rng, shapes.site_area_px(rng), center)
            if geom.intersects(keep_out):
                continue
            near = [g for g in placed if geom.distance(g) < 1.0]
            if near and rng.random() > 0.15:  # usually a berm of >= 1 px between sites
                continue
            if any(geom.intersection(g).area > 0.3 * min(geom.area, g.area) for g in near):
                continue  # touching or slightly overlapping, never one inside another
            break
        else:
            continue
        placed.append(geom)
        category = "pond" if rng.random() < (0.85 if in_row else pond_share) else "pit"
        if pal.calibrated:  # materials of real Amazon mines (AmazonPalette)
            if category == "pond":
                a, b = pal.draw("mine_water"), pal.draw("mine_water")
                mix = rng.uniform(0.0, 0.6)
            else:
                a, b = pal.draw("mine_soil"), pal.draw("mine_water", "mine_soil", (0.3, 1.0))
                mix = rng.uniform(0.0, 0.5)
        elif category == "pond":
            age = rng.choice(["pond_moderate", "pond_green", "pond_turquoise", "pond_deep"])
            a = pal.draw("pond_turbid", age, (0.0, 0.9))
            b = pal.draw("pond_turbid")
            mix = rng.uniform(0.0, 0.6)
        else:
            a = pal.draw("wet_soil", "laterite", (0.0, 0.4))
            b = pal.draw("pond_turbid", "wet_soil", (0.0, 0.6))
            mix = rng.uniform(0.0, 0.5)
        layers[category].add(geom, a, b, mix)
        sites.append(Site(len(sites) + 1, category, geom, cluster))
    if not placed:
        return
    # Halo: spoil and tailings around every site plus patches along the bank, then a ring of
    # degraded vegetation; the river channel itself stays visible.
    parts = [g.buffer(extent * rng.uniform(2.0, 9.0), quad_segs=4) for g in placed]
    for d in np.linspace(0, stretch.length, max(2, int(stretch.length / 15))):
        if rng.random() < 0.5:
            p, normal = point_and_normal(rng, stretch, d)
            off = width_px / 2 + abs(rng.normal(0, spread / 2))
            c = (p.x + normal[0] * off, p.y + normal[1] * off)
            area = np.pi * (rng.uniform(0.3, 0.8) * spread) ** 2
            parts.append(shapes.real_outline(rng, area, c).buffer(1.5, quad_segs=4))
    halo = shapely.union_all(parts).buffer(2).buffer(-2).difference(rivers)
    if halo.is_empty:
        return
    if pal.calibrated:
        other = "mine_vegetation" if rng.random() < 0.3 else "mine_soil"
        spectra = pal.draw("mine_soil"), pal.draw(other)
        fringe = pal.draw("mine_vegetation"), pal.draw("secondary")
    else:
        kind = rng.choice(["tailings", "laterite", "sand", "wet_soil"], p=[0.35, 0.35, 0.15, 0.15])
        other = rng.choice(["wet_soil", "secondary", "laterite", "pasture_dry"])
        spectra = pal.draw(kind), pal.draw(other)
        fringe = None
    layers["tailings"].add(halo, *spectra, rng.uniform(0.3, 1.0))
    if rng.random() < 0.7:  # a ragged fringe of felled and regrowing vegetation
        ring = shapely.union_all(
            [g.buffer(extent * rng.uniform(0.5, 8), quad_segs=4) for g in parts]
        )
        fringe = fringe or (pal.draw("secondary"), pal.draw("pasture_dry"))
        layers["clearing"].add(ring.difference(rivers), *fringe, 0.4)
