"""Tile intake: GeoTIFF bytes or an allowed local URI -> an open `Scene` checked against the model.

Checks, each with its own reason: the bytes are a TIFF (NOT_A_GEOTIFF), a URI lies under the
configured root (URI_NOT_ALLOWED), the raster has a CRS (CRS_MISSING, via imagery.scene), its
bands are named (BAND_ORDER_UNKNOWN: never guessed), the model's bands are present and the sensor
matches (BAND_MISMATCH / BAND_MISSING), the size is within limits (TILE_TOO_LARGE), and its ground
sampling distance suits the model (read as is, resampled onto the model's grid, or GSD_MISMATCH;
``imagery.gsd``). Bytes are spooled to a temporary file that is removed on close.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from imagery.errors import AsmSpotterError, ImageryError, Reason
from imagery.scene import (
    Scene,
    StackedScene,
    SubsetScene,
    check_geotiff,
    check_tiff_magic,
    on_model_grid,
)
from imagery.sensors import get_sensor

__all__ = ["check_tiff_magic", "ModelInput", "TileLimits", "open_tile"]


@dataclass(frozen=True)
class TileLimits:
    max_bytes: int = 256 * 1024**2
    max_pixels: int = 10980 * 10980  # one Sentinel-2 granule at 10 m


# Local files (``detect --local``, benchmarks) are read window by window: only the pixel limit
# applies; the byte limit guards the server's messages.
LOCAL_FILE_LIMITS = TileLimits(max_bytes=2**62)


@dataclass(frozen=True)
class ModelInput:
    """What the model reads: its sensor(s), band stack and ground sampling distance
    (bundle.json), and the bands read besides when a tile has them (``extra_bands``: the water /
    bare-soil test's, so an RGB model still gets the prefilter and site test on 6-band tiles)."""

    sensor: str
    bands: tuple[str, ...]
    gsd_m: float = 10.0
    sensors: tuple[str, ...] = ()  # every sensor the model accepts; () = (sensor,)
    extra_bands: tuple[str, ...] = ()
    optional_bands: tuple[str, ...] = ()  # of ``bands``: a tile without them reads them as nodata

    @classmethod
    def from_info(cls, info: dict) -> ModelInput:
        """``gsd_m`` from the bundle, else the sensor's model grid (10 m for Sentinel-2)."""
        from service.prefilter import REQUIRED_BANDS
        from training.engines.base import optional_bands  # numpy only

        gsd = info.get("gsd_m") or get_sensor(info["sensor"]).grid_m
        bands = tuple(info["bands"])
        extra = tuple(b for b in REQUIRED_BANDS if b not in bands)
        sensors = tuple(info.get("sensors") or (info["sensor"],))
        optional = optional_bands(info)
        return cls(info["sensor"], bands, float(gsd), sensors, extra, optional)

    @property
    def accepted_sensors(self) -> tuple[str, ...]:
        return self.sensors or (self.sensor,)

    def reads(self, available: Sequence[str]) -> tuple[str, ...]:
        """The bands read from a tile with ``available`` bands: the model's (its optional ones
        as nodata where the tile lacks them), then the extras the tile has."""
        extra = [b for b in self.extra_bands if b in available and b not in self.bands]
        return (*self.bands, *extra)


def check_size(n_bytes: int, limits: TileLimits, name: str) -> None:
    if n_bytes > limits.max_bytes:
        raise ImageryError(
            Reason.TILE_TOO_LARGE,
            f"{n_bytes} bytes exceed the server's limit of {limits.max_bytes}; "
            "split the scene or use the DetectScene stream",
            name,
        )


MAX_URI_CHARS = 4096


def check_uri(uri: str) -> None:
    """INVALID_ARGUMENT for a URI no file can have: too long, or control characters (NUL...),
    also once percent-decoded. Checked before the URI reaches the file system."""
    shown = uri if uri.isprintable() else ascii(uri)
    if len(uri) > MAX_URI_CHARS:
        raise ImageryError(
            Reason.INVALID_ARGUMENT,
            f"the tile URI has {len(uri)} characters (at most {MAX_URI_CHARS})",
            shown[:200] + "...",
        )
    if not (uri.isprintable() and unquote(uri).isprintable()):
        raise ImageryError(
            Reason.INVALID_ARGUMENT,
            "the tile URI holds control characters (e.g. NUL); send a plain path or file:// URI",
            shown,
        )


def resolve_uri(uri: str, allowed_root: str | Path | None) -> Path:
    """A path or file:// URI -> a real path that must lie under ``allowed_root``."""
    check_uri(uri)
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ImageryError(
            Reason.URI_NOT_ALLOWED,
            f"scheme {parsed.scheme!r} is not served; send the bytes or a local path",
            uri,
        )
    if allowed_root is None:
        raise ImageryError(
            Reason.URI_NOT_ALLOWED,
            "this server reads no files by URI (start it with --allowed-root); send the bytes",
            uri,
        )
    raw = unquote(parsed.path) if parsed.scheme == "file" else uri
    root = Path(os.path.realpath(allowed_root))
    path = Path(os.path.realpath(root / raw))  # relative paths are taken under the root
    if path != root and root not in path.parents:
        raise ImageryError(
            Reason.URI_NOT_ALLOWED, f"the path is outside the allowed root {root}", uri
        )
    try:
        found = path.is_file()
    except OSError:  # e.g. a file name longer than the file system allows
        found = False
    if not found:
        raise ImageryError(Reason.FILE_NOT_FOUND, "no such file under the allowed root", uri)
    return path


class SpooledTile:
    """Bytes arriving whole or in chunks, kept in a temporary .tif until ``close``."""

    def __init__(self, name: str, limits: TileLimits, spool_dir: str | None = None) -> None:
        self.name = name
        self.limits = limits
        fd, path = tempfile.mkstemp(suffix=".tif", prefix="asm-", dir=spool_dir)
        self.path = Path(path)
        self._file = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if self.size == 0 and chunk:
            check_tiff_magic(chunk, self.name)
        self.size += len(chunk)
        check_size(self.size, self.limits, self.name)
        self._file.write(chunk)

    def finish(self) -> Path:
        self._file.close()
        if self.size == 0:
            raise ImageryError(Reason.NOT_A_GEOTIFF, "the tile is empty (0 bytes)", self.name)
        return self.path

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)

    @contextmanager
    def naming(self) -> Iterator[None]:
        """Errors raised inside name the caller's tile, never this server's spool file (GDAL's
        messages quote the file they read)."""
        try:
            yield
        except AsmSpotterError as exc:
            spool = (str(self.path), self.path.name)
            if any(s in str(exc) for s in spool):
                detail, path = exc.detail, exc.path
                for s in spool:
                    detail = detail.replace(s, self.name)
                    path = path.replace(s, self.name) if path else path
                raise type(exc)(exc.reason, detail, path) from exc
            raise


def open_tile(
    path: str | Path,
    model: ModelInput,
    limits: TileLimits,
    sensor: str | None = None,
    band_names: Sequence[str] | None = None,
    name: str | None = None,
) -> Scene:
    """Open a stacked GeoTIFF, check it against the model; returns a scene of the bands the model
    reads (``ModelInput.reads``: its own first) on the model's grid (its ``grid_check`` says
    whether it was resampled)."""
    name = name or str(path)
    check_geotiff(path, name)
    check_size(Path(path).stat().st_size, limits, name)
    try:
        scene = StackedScene(
            path, sensor=sensor or None, bands=list(band_names) if band_names else None
        )
    except ImageryError as exc:  # name the tile, not the spool file
        raise ImageryError(exc.reason, exc.detail, name) from None
    scene.path = name
    try:
        _check_against_model(scene, model, limits, name)
        matched = on_model_grid(scene, model.gsd_m)
    except BaseException:
        scene.close()
        raise
    wanted = model.reads(matched.bands)
    if matched.bands == wanted:
        return matched
    return SubsetScene(matched, wanted, model.optional_bands)


def _check_against_model(
    scene: StackedScene, model: ModelInput, limits: TileLimits, name: str
) -> None:
    if scene.sensor.name not in model.accepted_sensors:
        raise ImageryError(
            Reason.BAND_MISMATCH,
            f"the tile is {scene.sensor.name} but the model reads "
            f"{' or '.join(model.accepted_sensors)} bands {list(model.bands)}",
            name,
        )
    missing = [b for b in model.bands if b not in scene.bands and b not in model.optional_bands]
    if missing:
        raise ImageryError(
            Reason.BAND_MISMATCH,
            f"the tile has bands {list(scene.bands)} but the model needs {list(model.bands)} "
            f"(missing {missing}); restack it with `asmspotter stack`",
            name,
        )
    g = scene.grid
    if g.width * g.height > limits.max_pixels:
        raise ImageryError(
            Reason.TILE_TOO_LARGE,
            f"{g.width} x {g.height} px exceed the server's limit of {limits.max_pixels} px; "
            "split the scene into smaller tiles",
            name,
        )
