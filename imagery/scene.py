"""Scenes: a sensor's band stack on one map grid, read window by window in physical units.

A ``Scene`` hides where the pixels come from (one stacked GeoTIFF, a folder of per-band COGs or
JP2, or Sentinel-1 GRD with GCPs) and always returns float32 ``[bands, rows, cols]`` with NaN where
a pixel is nodata. Nothing is read until a window is asked for, so memory does not grow with the
scene.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from imagery import scaling
from imagery.errors import ImageryError, Reason
from imagery.gsd import GridCheck, plan_model_grid
from imagery.sensors import SENTINEL2_L1C, SENTINEL2_L2A, Sensor, get_sensor

# SCL classes masked as unusable: saturated/defective, cloud shadow, cloud medium/high, thin cirrus.
SCL_MASKED = (1, 3, 8, 9, 10)
SENSOR_TAG = "ASMSPOTTER_SENSOR"
SCENE_ID_TAG = "ASMSPOTTER_SCENE_ID"
DATETIME_TAG = "ASMSPOTTER_DATETIME"
READABLE_DTYPES = {"uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"}


@dataclass(frozen=True)
class Grid:
    """A map grid: CRS, affine transform (pixel -> map) and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)


class Scene:
    """Base class: subclasses implement ``_read`` and optionally ``_read_cloud``."""

    sensor: Sensor
    bands: tuple[str, ...]
    grid: Grid
    scene_id: str
    datetime: str | None
    path: str
    grid_check: GridCheck | None = None  # set when the scene was matched to a model's GSD
    source_pixels: int | None = None  # pixels of the source raster, when warped onto ``grid``
    absent_bands: tuple[str, ...] = ()  # in ``bands`` but not in the source: read as nodata

    def read(self, window: Window | None = None) -> np.ndarray:
        """float32 [bands, h, w] in physical units (reflectance or dB); NaN where nodata."""
        window = window or Window(0, 0, self.grid.width, self.grid.height)
        try:
            return self._read(window)
        except RASTER_ERRORS as exc:  # truncated or corrupt blocks surface only on read
            raise ImageryError(
                Reason.NOT_A_GEOTIFF, f"corrupt or truncated raster data ({_why(exc)})", self.path
            ) from exc

    def read_cloud_mask(self, window: Window | None = None) -> np.ndarray | None:
        """bool [h, w], True where cloud or shadow; None when the scene has no cloud mask."""
        window = window or Window(0, 0, self.grid.width, self.grid.height)
        return self._read_cloud(window)

    def _read(self, window: Window) -> np.ndarray:
        raise NotImplementedError

    def _read_cloud(self, window: Window) -> np.ndarray | None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_OTHER_FORMATS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xffO\xffQ", "a JPEG 2000 codestream"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
)


def check_tiff_magic(head: bytes, name: str) -> None:
    """NOT_A_GEOTIFF unless ``head`` starts a TIFF; one message for every entry point."""
    if head[:4] in TIFF_MAGIC:
        return
    kind = next((k for magic, k in _OTHER_FORMATS if head.startswith(magic)), None)
    if kind is None:
        kind = "the file is empty" if not head else "the content is not a TIFF file"
    raise ImageryError(
        Reason.NOT_A_GEOTIFF,
        f"not a readable GeoTIFF ({kind}); give a stacked GeoTIFF such as the output of "
        "`asmspotter stack`",
        name,
    )


def check_geotiff(path: str | Path, name: str | None = None) -> None:
    """An existing file (not a folder) that starts like a TIFF."""
    p = Path(path)
    name = name or str(path)
    if not p.exists():
        raise ImageryError(Reason.FILE_NOT_FOUND, "no such file", name)
    if p.is_dir():
        raise ImageryError(
            Reason.INVALID_ARGUMENT,
            "is a folder, not a GeoTIFF; give its files (e.g. FOLDER/*.tif), or stack a "
            "Sentinel-2 folder first with `asmspotter stack`",
            name,
        )
    with open(p, "rb") as f:
        check_tiff_magic(f.read(16), name)


# What GDAL/rasterio raise on a malformed file: their own errors, and UnicodeDecodeError when
# GDAL's error or metadata text is not UTF-8 (fuzzed TIFFs).
RASTER_ERRORS = (RasterioError, CPLE_BaseError, UnicodeDecodeError)


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "GDAL reported an error whose text is not UTF-8"
    return str(exc)


def _open_raster(path: str | Path) -> rasterio.DatasetReader:
    path = str(path)
    if not Path(path).exists():
        raise ImageryError(Reason.FILE_NOT_FOUND, "no such file", path)
    try:
        # A raster without a geotransform opens with an identity transform and rasterio's
        # NotGeoreferencedWarning; check_transform refuses it with the project's own line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RASTER_ERRORS as exc:
        raise ImageryError(
            Reason.NOT_A_GEOTIFF, f"not a readable GeoTIFF/JP2 raster ({_why(exc)})", path
        ) from exc


def check_transform(transform: Affine, path: str) -> None:
    """GEOTRANSFORM_INVALID unless the raster has a geotransform (GDAL's stand-in for none is
    the identity, 1 m pixels at 0, 0: never a real tile's) whose pixels have a finite, non-zero
    size (sites need an area)."""
    if transform.is_identity:
        raise ImageryError(
            Reason.GEOTRANSFORM_INVALID,
            "raster has no geotransform (not georeferenced: its pixels have no place or size); "
            "write the tile's real transform (e.g. gdal_edit.py -a_ullr) or use "
            "`asmspotter stack`",
            path,
        )
    if not all(np.isfinite(v) for v in transform[:6]) or not abs(transform.determinant) > 0:
        raise ImageryError(
            Reason.GEOTRANSFORM_INVALID,
            f"degenerate geotransform {tuple(transform[:6])}: pixels need a finite, non-zero "
            "size; write the tile's real transform (e.g. gdal_edit.py -a_ullr) or use "
            "`asmspotter stack`",
            path,
        )


def physical_units(
    dtypes: Sequence[str],
    scales: Sequence[float],
    offsets: Sequence[float],
    sensor: Sensor,
    path: str,
) -> tuple[list[float], list[float]]:
    """(scale, offset) per band that turn file values into physical units, never guessed.

    A band's scale/offset tags are honoured whenever set. Untagged: floats are physical already,
    and uint16 optical DNs follow the Sentinel-2 product convention (x ``sensor.scale``); any
    other integer type (int16, uint8, ...) is refused with UNITS_UNKNOWN.
    """
    out_scales, out_offsets = [], []
    for dtype, scale, offset in zip(dtypes, scales, offsets, strict=True):
        if scale != 1.0 or offset != 0.0 or dtype.startswith("float"):
            out_scales.append(scale)
        elif dtype == "uint16":
            out_scales.append(sensor.scale)
        else:
            raise ImageryError(
                Reason.UNITS_UNKNOWN,
                f"{dtype} bands without scale/offset tags: their units cannot be known (only "
                "uint16 Sentinel DNs have a convention); set the scale (e.g. gdal_edit.py -scale "
                "0.0001 for reflectance x 10000) or restack with `asmspotter stack`",
                path,
            )
        out_offsets.append(offset)
    return out_scales, out_offsets


def _check_nan(data: np.ndarray, nodata: float | None, path: str) -> None:
    if data.dtype.kind == "f" and not (nodata is not None and np.isnan(nodata)):
        if np.isnan(data).any():
            raise ImageryError(
                Reason.NAN_VALUES,
                "raster holds NaN values but does not declare NaN as nodata; "
                "set nodata=nan or replace the NaNs",
                path,
            )


def _to_physical(
    data: np.ndarray, nodata: float | None, scale: float, offset: float, path: str
) -> np.ndarray:
    _check_nan(data, nodata, path)
    out = data.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if nodata is not None:
        invalid = np.isnan(data) if np.isnan(nodata) else data == nodata
        out[invalid] = np.nan
    return out


ORDER_HINT = (
    "name the bands in file order (--band-order B02,B03,B04,... on the command line, band_names "
    "in the API) or restack the file with `asmspotter stack`"
)


def _described_bands(descriptions: Sequence[str | None], sensor: Sensor, path: str) -> list[str]:
    """Band names from the file's band descriptions; refused unless every band names one."""
    missing = [i + 1 for i, d in enumerate(descriptions) if not d]
    if missing:
        raise ImageryError(
            Reason.BAND_ORDER_UNKNOWN,
            f"{len(descriptions)} bands, {len(missing)} without a band description: which band "
            f"is which cannot be established; {ORDER_HINT}",
            path,
        )
    names = [sensor.band_name(d) for d in descriptions]
    unknown = [d for d, n in zip(descriptions, names, strict=True) if n is None]
    if unknown:
        raise ImageryError(
            Reason.BAND_ORDER_UNKNOWN,
            f"band descriptions {unknown} name no {sensor.name} band (expected e.g. B02 or "
            f"blue); {ORDER_HINT}",
            path,
        )
    return _no_repeats(names, path)


def _given_bands(given: Sequence[str], count: int, sensor: Sensor, path: str) -> list[str]:
    if len(given) != count:
        raise ImageryError(
            Reason.BAND_MISMATCH,
            f"file has {count} bands but {len(given)} band names were given ({list(given)})",
            path,
        )
    names = [sensor.band_name(str(g)) for g in given]
    unknown = [g for g, n in zip(given, names, strict=True) if n is None]
    if unknown:
        raise ImageryError(
            Reason.BAND_MISMATCH,
            f"{unknown} are not {sensor.name} bands ({sensor.band_names})",
            path,
        )
    return _no_repeats(names, path)


def _no_repeats(names: list[str | None], path: str) -> list[str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ImageryError(Reason.BAND_MISMATCH, f"band(s) {repeated} appear twice", path)
    return [str(n) for n in names]


class StackedScene(Scene):
    """One multi-band GeoTIFF; band names from its descriptions or from ``bands``.

    The band order is never guessed: without ``bands``, every band must carry a description that
    names a band of the sensor (``B02`` or its STAC common name ``blue``), else the file is
    refused with BAND_ORDER_UNKNOWN.
    """

    def __init__(
        self, path: str | Path, sensor: str | None = None, bands: Sequence[str] | None = None
    ) -> None:
        self.path = str(path)
        check_geotiff(path)
        self._src = _open_raster(path)
        try:
            self._describe(sensor, bands)
        except BaseException:
            self._src.close()
            raise

    def _describe(self, sensor: str | None, bands: Sequence[str] | None) -> None:
        src = self._src
        try:
            tags = src.tags()
            descriptions = src.descriptions
        except RASTER_ERRORS as exc:
            raise ImageryError(
                Reason.NOT_A_GEOTIFF, f"unreadable GeoTIFF metadata ({_why(exc)})", self.path
            ) from exc
        check_transform(src.transform, self.path)
        if src.crs is None:
            raise ImageryError(
                Reason.CRS_MISSING,
                "raster has no CRS; write one (e.g. gdal_edit.py -a_srs EPSG:32629) "
                "or use `asmspotter stack`",
                self.path,
            )
        if src.dtypes[0] not in READABLE_DTYPES:
            raise ImageryError(
                Reason.WRONG_DTYPE,
                f"dtype {src.dtypes[0]} is not supported; use one of {sorted(READABLE_DTYPES)}",
                self.path,
            )
        self.sensor = get_sensor(sensor or tags.get(SENSOR_TAG, SENTINEL2_L2A.name))
        self.bands = tuple(
            _given_bands(bands, src.count, self.sensor, self.path)
            if bands
            else _described_bands(descriptions, self.sensor, self.path)
        )
        self.grid = Grid(src.crs, src.transform, src.width, src.height)
        self.scene_id = tags.get(SCENE_ID_TAG, Path(self.path).stem)
        self.datetime = tags.get(DATETIME_TAG)
        self._scales, self._offsets = physical_units(
            src.dtypes, src.scales, src.offsets, self.sensor, self.path
        )

    def physical(self, data: np.ndarray, nodata: float | None) -> np.ndarray:
        """File values [bands, h, w] -> float32 physical units, NaN where ``nodata``."""
        out = np.empty(data.shape, np.float32)
        for i in range(data.shape[0]):
            out[i] = _to_physical(data[i], nodata, self._scales[i], self._offsets[i], self.path)
        return out

    def _read(self, window: Window) -> np.ndarray:
        return self.physical(self._src.read(window=window), self._src.nodata)

    def close(self) -> None:
        self._src.close()


class BandFileScene(Scene):
    """Per-band rasters (COG or JP2) resampled onto the finest band's grid."""

    def __init__(
        self,
        band_files: dict[str, str],
        sensor: Sensor,
        *,
        dn_offset: float = 0.0,
        scl_file: str | None = None,
        scene_id: str,
        datetime: str | None = None,
        path: str,
    ) -> None:
        self.sensor = sensor
        self.bands = tuple(band_files)
        self.scene_id = scene_id
        self.datetime = datetime
        self.path = path
        self.dn_offset = dn_offset
        self._stack = ExitStack()
        srcs = {b: self._stack.enter_context(_open_raster(f)) for b, f in band_files.items()}
        finest = min(srcs.values(), key=lambda s: abs(s.transform.a))
        if finest.crs is None:
            raise ImageryError(Reason.CRS_MISSING, "band raster has no CRS", finest.name)
        self.grid = Grid(finest.crs, finest.transform, finest.width, finest.height)
        self._sources = {b: self._on_grid(s, Resampling.bilinear) for b, s in srcs.items()}
        self._nodata = {b: s.nodata if s.nodata is not None else 0 for b, s in srcs.items()}
        self._scl = None
        if scl_file:
            scl = self._stack.enter_context(_open_raster(scl_file))
            self._scl = self._on_grid(scl, Resampling.nearest)

    def _on_grid(
        self, src: rasterio.DatasetReader, resampling: Resampling
    ) -> rasterio.io.DatasetReaderBase:
        g = self.grid
        if src.transform == g.transform and (src.width, src.height) == (g.width, g.height):
            return src
        return self._stack.enter_context(
            WarpedVRT(
                src,
                crs=g.crs,
                transform=g.transform,
                width=g.width,
                height=g.height,
                resampling=resampling,
                src_nodata=src.nodata if src.nodata is not None else 0,
                nodata=src.nodata if src.nodata is not None else 0,
            )
        )

    def _read(self, window: Window) -> np.ndarray:
        h, w = int(window.height), int(window.width)
        out = np.empty((len(self.bands), h, w), np.float32)
        for i, band in enumerate(self.bands):
            dn = self._sources[band].read(1, window=window)
            out[i] = scaling.dn_to_reflectance(dn, self.dn_offset)
            out[i][dn == self._nodata[band]] = np.nan
        return out

    def _read_cloud(self, window: Window) -> np.ndarray | None:
        if self._scl is None:
            return None
        return np.isin(self._scl.read(1, window=window), SCL_MASKED)

    def close(self) -> None:
        self._stack.close()


_BAND_RE = re.compile(r"(?:^|_)(B\d[0-9A])(?:_(\d+)m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)


def _find_band_files(folder: Path, bands: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """Earth Search names (B02.tif, SCL.tif) or SAFE names (T33UUU_..._B02[_10m].jp2)."""
    found: dict[str, tuple[int, str]] = {}
    scl: tuple[int, str] | None = None
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() not in (".tif", ".tiff", ".jp2"):
            continue
        res = int(m.group(1)) if (m := re.search(r"_(\d+)m\.", f.name)) else 0
        if re.search(r"(?:^|_)SCL(?:_\d+m)?\.(?:tif|jp2)$", f.name, re.IGNORECASE):
            if scl is None or res < scl[0]:
                scl = (res, str(f))
            continue
        m = _BAND_RE.search(f.name)
        if m and m.group(1).upper() in bands:
            band = m.group(1).upper()
            if band not in found or res < found[band][0]:  # prefer the finest copy
                found[band] = (res, str(f))
    missing = [b for b in bands if b not in found]
    if missing:
        raise ImageryError(
            Reason.BAND_MISSING, f"no raster for band(s) {missing} in the folder", str(folder)
        )
    return {b: found[b][1] for b in bands}, (scl[1] if scl else None)


def _stac_item(folder: Path) -> dict | None:
    for f in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if doc.get("type") == "Feature" and "assets" in doc:
            return doc
    return None


def open_band_folder(
    folder: str | Path, bands: Sequence[str] | None = None, sensor: str | None = None
) -> BandFileScene:
    """A Sentinel-2 folder: Earth Search layout with its STAC item, or SAFE-style JP2 names."""
    folder = Path(folder)
    item = _stac_item(folder)
    props = item.get("properties", {}) if item else {}
    product = str(props.get("s2:product_type", "")) + " " + folder.name
    if sensor is None:
        sensor = SENTINEL2_L1C.name if ("L1C" in product or "1C" in product) else None
    s2 = get_sensor(sensor) if sensor else (SENTINEL2_L2A if item else _guess_level(folder))
    bands = tuple(bands or s2.default_stack)
    files, scl = _find_band_files(folder, bands)
    # Without a STAC item, SAFE-style names carry the id: T33UUU_20170216T102101_B02.jp2
    stem = os.path.commonprefix([Path(f).name for f in files.values()]).rstrip("_B")
    name = folder.name if re.search(r"\d{8}", folder.name) or len(stem) < 6 else stem
    acquired = _acquisition_date(props.get("datetime") or name)
    baseline = props.get("s2:processing_baseline") or props.get("s2:product_uri") or name
    return BandFileScene(
        files,
        s2,
        dn_offset=scaling.dn_offset(
            baseline if scaling.parse_baseline(baseline) else None, acquired
        ),
        scl_file=scl if s2 is SENTINEL2_L2A else None,
        scene_id=(item or {}).get("id", name),
        datetime=props.get("datetime") or (acquired.isoformat() if acquired else None),
        path=str(folder),
    )


def _guess_level(folder: Path) -> Sensor:
    names = " ".join(p.name for p in folder.rglob("*"))
    return SENTINEL2_L2A if ("SCL" in names or "L2A" in names) else SENTINEL2_L1C


def _acquisition_date(text: str | None) -> date | None:
    if not text:
        return None
    m = re.search(r"(\d{4})-?(\d{2})-?(\d{2})", text)
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def open_scene(
    path: str | Path,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    resolution: float | None = None,
    band_order: Sequence[str] | None = None,
    optional_bands: Sequence[str] = (),
) -> Scene:
    """Open a stacked GeoTIFF, a Sentinel-2 band folder or a Sentinel-1 GRD folder.

    ``bands`` selects bands; those of ``optional_bands`` a stacked GeoTIFF lacks read as nodata
    (``Scene.absent_bands``). ``band_order`` names a stacked GeoTIFF's bands in file order when
    its band descriptions do not.
    """
    path = Path(path)
    if not path.exists():
        raise ImageryError(Reason.FILE_NOT_FOUND, "no such file or folder", str(path))
    if path.is_file():
        scene = StackedScene(path, sensor=sensor, bands=band_order)
        if bands and tuple(bands) != scene.bands:
            try:
                # raises BAND_MISSING with the file's bands
                return SubsetScene(scene, bands, optional_bands)
            except BaseException:
                scene.close()
                raise
        return scene
    if band_order:
        raise ImageryError(
            Reason.INVALID_ARGUMENT,
            "--band-order names the bands of one stacked GeoTIFF; this is a folder",
            str(path),
        )
    if (path / "measurement").is_dir() or sensor == "sentinel1-grd":
        from imagery.sentinel1 import open_grd

        return open_grd(path, bands=bands, resolution=resolution or 10.0)
    return open_band_folder(path, bands=bands, sensor=sensor)


def take_bands(data: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Planes ``idx`` of a [C,H,W] stack; index -1 gives a plane of nodata (NaN): a band the
    source lacks."""
    if -1 not in idx:
        return data[list(idx)]
    out = np.full((len(idx), *data.shape[1:]), np.nan, np.float32)
    for k, j in enumerate(idx):
        if j >= 0:
            out[k] = data[j]
    return out


class SubsetScene(Scene):
    """A scene seen through a band selection (e.g. the model's stack of a wider file)."""

    def __init__(self, scene: Scene, bands: Sequence[str], optional: Sequence[str] = ()) -> None:
        """``optional``: bands that, when ``scene`` lacks them, read as nodata (NaN)."""
        missing = [b for b in bands if b not in scene.bands and b not in optional]
        if missing:
            raise ImageryError(
                Reason.BAND_MISSING,
                f"missing band(s) {missing}; the file has {list(scene.bands)}",
                scene.path,
            )
        self._scene = scene
        self._idx = [scene.bands.index(b) if b in scene.bands else -1 for b in bands]
        self.sensor, self.grid, self.path = scene.sensor, scene.grid, scene.path
        self.scene_id, self.datetime = scene.scene_id, scene.datetime
        self.grid_check = scene.grid_check
        self.bands = tuple(bands)
        self.absent_bands = tuple(
            b for b in bands if b not in scene.bands or b in scene.absent_bands
        )

    def _read(self, window: Window) -> np.ndarray:
        return take_bands(self._scene._read(window), self._idx)

    def close(self) -> None:
        self._scene.close()


class WarpedScene(Scene):
    """A stacked GeoTIFF read through GDAL's warper onto another grid (resampled, reprojected)."""

    def __init__(
        self, scene: StackedScene, grid: Grid, resampling: Resampling, check: GridCheck
    ) -> None:
        self._scene = scene
        src = scene._src
        floating = src.dtypes[0].startswith("float")
        self._nodata = src.nodata if src.nodata is not None else (np.nan if floating else 0)
        self._vrt = WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            src_nodata=self._nodata,
            nodata=self._nodata,
        )
        self.sensor, self.bands, self.path = scene.sensor, scene.bands, scene.path
        self.scene_id, self.datetime = scene.scene_id, scene.datetime
        self.grid, self.grid_check = grid, check

    def _read(self, window: Window) -> np.ndarray:
        return self._scene.physical(self._vrt.read(window=window), self._nodata)

    def close(self) -> None:
        self._vrt.close()
        self._scene.close()


def on_model_grid(scene: StackedScene, model_gsd_m: float) -> Scene:
    """The scene as a model of ``model_gsd_m`` should read it: as is, or resampled onto a grid
    of that GSD (``imagery.gsd.plan_model_grid``); refused with GSD_MISMATCH when far coarser."""
    g = scene.grid
    plan = plan_model_grid(g.crs, g.transform, g.width, g.height, model_gsd_m, scene.path)
    if not plan.check.resampled:
        scene.grid_check = plan.check
        return scene
    grid = Grid(plan.crs, plan.transform, plan.width, plan.height)
    return WarpedScene(scene, grid, plan.resampling, plan.check)


class ArrayScene(Scene):
    """An in-memory stack [C,H,W] in physical units (NaN = nodata) on a grid: chips, tests."""

    def __init__(
        self,
        data: np.ndarray,
        bands: Sequence[str],
        grid: Grid,
        sensor: str = SENTINEL2_L2A.name,
        scene_id: str = "array",
        datetime: str | None = None,
    ) -> None:
        data = np.asarray(data, np.float32)
        if data.ndim != 3 or data.shape[0] != len(bands):
            raise ImageryError(
                Reason.BAND_MISMATCH, f"array of shape {data.shape} for bands {list(bands)}"
            )
        if data.shape[1:] != (grid.height, grid.width):
            raise ImageryError(
                Reason.INVALID_ARGUMENT,
                f"array is {data.shape[2]} x {data.shape[1]} px, the grid {grid.width} x "
                f"{grid.height}",
            )
        self.sensor = get_sensor(sensor)
        self.bands, self.grid, self._data = tuple(bands), grid, data
        self.scene_id, self.datetime, self.path = scene_id, datetime, scene_id
        # a wholly NaN band beside bands with data: one the source lacks (e.g. NIR of an RGB chip)
        empty = np.isnan(data).all(axis=(1, 2))
        if not empty.all():
            self.absent_bands = tuple(b for b, e in zip(bands, empty, strict=True) if e)

    def _read(self, window: Window) -> np.ndarray:
        (r0, r1), (c0, c1) = window.toranges()
        return self._data[:, r0:r1, c0:c1].copy()


def iter_blocks(scene: Scene, block: int = 1024) -> Iterator[tuple[Window, np.ndarray]]:
    """Non-overlapping blocks covering the scene (for statistics and copies)."""
    g = scene.grid
    for row in range(0, g.height, block):
        for col in range(0, g.width, block):
            win = Window(col, row, min(block, g.width - col), min(block, g.height - row))
            yield win, scene.read(win)
