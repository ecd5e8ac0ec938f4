"""Imagery by area and dates: STAC search, per-pixel SCL cloud masking, median composite.

Items come from a STAC API (pystac-client; presets: Earth Search, Planetary Computer) or from
static STAC on disk or a web server (``monitoring.stac_source``); odc-stac reads
the assets onto one grid (the first item's CRS and pixel lattice at the asked resolution, framing
the area); the median of the cloud-free observations of each pixel is written block by block as
the project's stacked tile (uint16 DN, nodata 0, COG), clipped to the area.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from imagery import feedback, scaling
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84, geometry_to_mask, reproject
from imagery.gsd import GSD_TOLERANCE
from imagery.scene import SCL_MASKED, Grid
from imagery.sensors import SENTINEL2_L2A
from imagery.tiles import TileWriter
from imagery.vector import read_features
from monitoring.stac_source import find_items, parse_dates

PRESETS = {
    "earth-search": ("https://earth-search.aws.element84.com/v1", "sentinel-2-l2a"),
    "planetary-computer": ("https://planetarycomputer.microsoft.com/api/stac/v1", "sentinel-2-l2a"),
}
SCL_KEYS = ("scl", "SCL")
BLOCK = 1024


def area_geometry(path: str | Path) -> BaseGeometry:
    """The union of an area file's polygons, in WGS84."""
    features = read_features(path).to_crs(WGS84)
    polys = [g for g in features.geometries if g is not None and g.area > 0]
    if not polys:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, "the area file holds no polygon", str(path))
    return shapely.union_all([shapely.make_valid(g) for g in polys])


def asset_key(item: Any, band: str) -> str:
    """The item's asset holding ``band``: 'B02', 'b02' or its common name ('blue')."""
    candidates = [band, band.lower()]
    if band in SCL_KEYS:
        candidates = list(SCL_KEYS)
    else:
        common = SENTINEL2_L2A.band(band).common_name
        candidates += [common] if common else []
    for key in candidates:
        if key in item.assets:
            return key
    raise AsmSpotterError(
        Reason.BAND_MISSING, f"item {item.id} has no asset for band {band} (tried {candidates})"
    )


def item_offset(item: Any) -> float:
    """The DN offset of an item (-1000 from baseline 04.00 on, unless the provider removed it)."""
    props = item.properties
    if props.get("earthsearch:boa_offset_applied"):
        return 0.0
    acquired = item.datetime.date() if item.datetime else None
    return scaling.dn_offset(props.get("s2:processing_baseline"), acquired)


def native_resolution(item: Any, keys: Sequence[str]) -> float | None:
    """The finest pixel size (m) of the item's assets for ``keys`` (``proj:transform``/``gsd``)."""
    sizes = []
    for key in keys:
        asset = item.assets[key]
        t = asset.extra_fields.get("proj:transform")
        gsd = asset.extra_fields.get("gsd") or item.properties.get("gsd")
        if t:
            sizes.append(abs(float(t[0])))
        elif gsd:
            sizes.append(float(gsd))
    return min(sizes) if sizes else None


def check_resolution(item: Any, keys: Sequence[str], resolution: float) -> None:
    """GSD_MISMATCH when the composite would be finer than the imagery: upsampling invents
    detail, and the tile would then pass as 10 m imagery where the model is concerned."""
    native = native_resolution(item, keys)
    if native is not None and resolution < native * (1 - GSD_TOLERANCE):
        raise AsmSpotterError(
            Reason.GSD_MISMATCH,
            f"--resolution {resolution:g} m is finer than the imagery ({item.id}: its finest "
            f"band is {native:g} m); a finer composite would invent detail: use --resolution "
            f"{native:g}",
        )


def output_grid(items: Sequence[Any], area: BaseGeometry, resolution: float) -> Grid:
    """The most common item CRS; the first item's pixel lattice; the area's bounds."""
    from rasterio.crs import CRS

    codes = Counter(
        i.properties.get("proj:code") or f"EPSG:{i.properties.get('proj:epsg')}" for i in items
    )
    code = codes.most_common(1)[0][0]
    crs = CRS.from_user_input(code)
    first = next(
        i
        for i in items
        if (i.properties.get("proj:code") or f"EPSG:{i.properties.get('proj:epsg')}") == code
    )
    x0, y0 = 0.0, 0.0
    for asset in first.assets.values():
        t = asset.extra_fields.get("proj:transform")
        if t:
            x0, y0 = t[2], t[5]
            break
    minx, miny, maxx, maxy = reproject(area, WGS84, crs).bounds
    left = x0 + math.floor((minx - x0) / resolution) * resolution
    top = y0 - math.floor((y0 - maxy) / resolution) * resolution
    right = x0 + math.ceil((maxx - x0) / resolution) * resolution
    bottom = y0 - math.ceil((y0 - miny) / resolution) * resolution
    width, height = round((right - left) / resolution), round((top - bottom) / resolution)
    return Grid(crs, Affine(resolution, 0, left, 0, -resolution, top), width, height)


def solar_day(when: datetime, lon: float) -> date:
    return (when + timedelta(hours=lon / 15)).date()


def composite(
    area_path: str | Path,
    start: str,
    end: str,
    out: str | Path,
    *,
    stac_url: str = PRESETS["earth-search"][0],
    collection: str | None = None,
    bands: Sequence[str] = SENTINEL2_L2A.default_stack,
    max_cloud: float | None = 60.0,
    resolution: float = 10.0,
    resampling: str = "nearest",
    progress: bool = True,
    modifier: Callable | None = None,
) -> dict[str, Any]:
    """Find items (a STAC API or static STAC, ``monitoring.stac_source``), mask clouds and
    shadows with SCL, take the per-pixel median, write a COG tile."""
    parse_dates(start, end)  # before reading the area or any network
    area = area_geometry(area_path)
    items = find_items(stac_url, collection, area, start, end, max_cloud, modifier)
    if not items:
        raise AsmSpotterError(
            Reason.ALL_NODATA,
            f"no {collection or 'Sentinel-2 L2A'} items at {stac_url} for the area between "
            f"{start} and {end}"
            + (f" with cloud cover <= {max_cloud}%" if max_cloud is not None else ""),
        )
    stats = write_median(
        items,
        area,
        out,
        scene_id=f"composite_{start}_{end}",
        stac_url=stac_url,
        bands=bands,
        resolution=resolution,
        resampling=resampling,
        progress=progress,
    )
    if stats["valid_fraction"] == 0:
        Path(out).unlink(missing_ok=True)
        raise AsmSpotterError(
            Reason.ALL_NODATA, "every pixel of the area is cloud, shadow or nodata on every date"
        )
    return stats


def write_median(
    items: Sequence[Any],
    area: BaseGeometry,
    out: str | Path,
    *,
    scene_id: str,
    stac_url: str = "",
    bands: Sequence[str] = SENTINEL2_L2A.default_stack,
    resolution: float = 10.0,
    resampling: str = "nearest",
    progress: bool = False,
) -> dict[str, Any]:
    """The per-pixel median of the SCL-clear observations of ``items`` over ``area`` (WGS84) as
    a stacked COG tile; pixels never seen clear are nodata. One item: that acquisition, masked.

    Returns items, dates, size, CRS and ``valid_fraction`` (share of the area seen clear).
    """
    import odc.stac
    from odc.geo.geobox import GeoBox

    keys = [asset_key(items[0], b) for b in bands]
    check_resolution(items[0], keys, resolution)
    grid = output_grid(items, area, resolution)
    scl = asset_key(items[0], "SCL")
    lon = area.centroid.x
    offsets = {solar_day(i.datetime, lon): item_offset(i) for i in items}
    ds = odc.stac.load(
        items,
        bands=[*keys, scl],
        geobox=GeoBox((grid.height, grid.width), grid.transform, grid.crs),
        groupby="solar_day",
        resampling={"*": resampling, scl: "nearest"},
        chunks={"x": BLOCK, "y": BLOCK},
    )
    times = [datetime.fromisoformat(str(t)[:19]) for t in ds.time.values]
    day_offsets = np.array([offsets.get(solar_day(t, lon), 0.0) for t in times])
    area_local = reproject(area, WGS84, grid.crs)
    valid_px = obs_px = 0
    windows = [
        Window(c, r, min(BLOCK, grid.width - c), min(BLOCK, grid.height - r))
        for r in range(0, grid.height, BLOCK)
        for c in range(0, grid.width, BLOCK)
    ]
    stamp = max(times).isoformat() + "Z"
    with TileWriter(
        out,
        grid,
        bands,
        SENTINEL2_L2A.name,
        scene_id=scene_id,
        datetime=stamp,
        extra_tags={"ASMSPOTTER_ITEMS": ",".join(i.id for i in items), "ASMSPOTTER_STAC": stac_url},
    ) as writer:
        for win in feedback.bar(windows, desc="composite", unit="block", enabled=progress):
            sel = {
                "y": slice(int(win.row_off), int(win.row_off + win.height)),
                "x": slice(int(win.col_off), int(win.col_off + win.width)),
            }
            block = ds.isel(**sel).compute()
            scl_dn = block[scl].values  # [T, h, w]
            clear = ~np.isin(scl_dn, (0, *SCL_MASKED))
            inside = geometry_to_mask(
                area_local, grid.window_transform(win), (int(win.height), int(win.width))
            )
            out_dn = np.zeros((len(bands), int(win.height), int(win.width)), np.uint16)
            for b, key in enumerate(keys):
                dn = block[key].values.astype(np.float64)
                ok = clear & (dn > 0)
                dn = np.where(ok, dn + day_offsets[:, None, None], np.nan)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: never seen clear
                    med = np.nanmedian(dn, axis=0) if dn.shape[0] else dn[0]
                good = np.isfinite(med) & inside
                out_dn[b][good] = np.clip(np.rint(med[good]), 1, 65535).astype(np.uint16)
            writer.write(win, out_dn)
            all_ok = (out_dn > 0).all(axis=0)
            valid_px += int(all_ok.sum())
            obs_px += int(inside.sum())
    return {
        "items": [i.id for i in items],
        "dates": [t.date().isoformat() for t in times],
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs.to_string(),
        "valid_fraction": valid_px / max(obs_px, 1),
        "path": str(out),
    }
