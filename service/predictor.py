"""The transport-free predictor: tile -> windows -> model -> merged sites -> georeferenced polygons.

Stages live in their own modules: ``service.tiles`` (intake and checks), ``imagery.windows``
(windowing), ``service.batching`` (model execution), ``service.merge`` (seam merging) and
``imagery.geometry`` (polygons, reprojection, area). The gRPC servicer and the CLI's ``--local``
mode both call ``Predictor``; nothing here knows about gRPC.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj.exceptions import CRSError
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, ImageryError, Reason
from imagery.geometry import area_m2, as_crs, mask_to_geometry, reproject, to_map_space
from imagery.gsd import GridCheck
from imagery.scene import Scene
from imagery.windows import WindowSpec, iter_windows
from service.batching import BatchRunner, Model
from service.errors import ServiceError, ServiceReason
from service.merge import Detection, MergedSite, SeamMerger
from service.prefilter import WindowPrefilter
from service.tiles import LOCAL_FILE_LIMITS, ModelInput, TileLimits, open_tile

DEFAULT_MIN_SCORE = 0.5
# Masks at the scene's origin have an identity transform, which rasterio warns about needlessly.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.features")


@dataclass(frozen=True)
class DetectOptions:
    min_score: float = DEFAULT_MIN_SCORE
    output_crs: str = "EPSG:4326"
    max_detections: int = 0  # 0: no limit

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"min_score must be in [0, 1], got {self.min_score}"
            )
        if self.max_detections < 0:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"max_detections must be >= 0, got {self.max_detections}"
            )
        try:
            as_crs(self.output_crs)
        except CRSError:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"output_crs {self.output_crs!r} is not a CRS; use e.g. 'EPSG:4326'",
            ) from None


@dataclass
class Site:
    site_id: str
    class_name: str
    score: float
    geometry: BaseGeometry  # in the output CRS
    bbox: tuple[float, float, float, float]
    area_m2: float
    tile_id: str

    def geojson(self) -> dict[str, Any]:
        return mapping(self.geometry)


@dataclass
class TileResult:
    tile_id: str
    crs: str
    width: int
    height: int
    window_count: int
    sites: list[Site] = field(default_factory=list)
    windows_skipped: int = 0  # valid windows the prefilter kept from the model
    grid_check: GridCheck | None = None  # the tile's GSD, and whether it was resampled


@dataclass
class Progress:
    """Sites that became final, and how far the scene is."""

    sites: list[Site]
    windows_done: int
    windows_total: int
    windows_skipped: int = 0  # so far, by the prefilter (nodata windows not counted)


Cancelled = Callable[[], bool]


def tile_id_for(content: bytes | None = None, path: str | Path | None = None) -> str:
    """A default tile id: the file's stem, or a digest of the bytes."""
    if path is not None:
        return Path(str(path)).stem
    return "tile-" + hashlib.sha256(content or b"").hexdigest()[:12]


class Predictor:
    """Runs a ``DetectionModel`` over whole tiles. Thread-safe: concurrent calls share batches."""

    def __init__(
        self,
        model: Model,
        overlap: int | None = None,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        precision: str = "auto",
        limits: TileLimits | None = None,
        merge_iou: float = 0.5,
        on_batch: Callable[[int, float], None] | None = None,
        model_workers: int = 1,
        prefilter: bool = True,
        site_test: bool = True,
    ) -> None:
        self.model = model
        info = model.info
        self.info = info
        self.classes: list[str] = list(info["classes"])
        self.model_input = ModelInput.from_info(info)
        chip = int(info["chip_size"])
        self.windows = WindowSpec(chip, chip // 4 if overlap is None else overlap)
        self.max_batch = max_batch
        self.limits = limits or LOCAL_FILE_LIMITS
        self.merge_iou = merge_iou
        # The water/bare-soil test (service/prefilter.py); None for a model without the optical
        # bands it needs (e.g. Sentinel-1). ``prefilter``: skip windows that fail it (the model
        # runs on fewer windows); ``site_test``: drop detections with too few candidate pixels
        # under their mask (false alarms on cloud and forest). With both on, skipping changes
        # nothing: a skipped window could only have yielded detections the site test drops.
        spectral = WindowPrefilter.for_bands(self.model_input.bands)
        self.spectral = spectral if prefilter or site_test else None
        self.skip_windows, self.site_test = prefilter, site_test
        self.runner = BatchRunner(
            model,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            precision=precision,
            on_batch=on_batch,
            workers=model_workers,
        )

    # -- model identity -------------------------------------------------------------------------
    @property
    def version(self) -> dict[str, str]:
        return {
            "name": str(self.info.get("name", "")),
            "version": str(self.info.get("version", "")),
            "weights_sha256": str(self.info.get("weights_sha256", "")),
        }

    def warm_up(self) -> None:
        """One forward pass on a blank batch, so the first request pays no start-up cost."""
        size = self.windows.size
        blank = np.full((1, len(self.model_input.bands), size, size), 0.05, np.float32)
        self.runner.run(blank)

    def close(self) -> None:
        self.runner.close()

    # -- entry points ---------------------------------------------------------------------------
    def open(
        self,
        path: str | Path,
        sensor: str = "",
        band_names: list[str] | None = None,
        name: str | None = None,
        limits: TileLimits | None = None,
    ) -> Scene:
        limits = limits or self.limits
        return open_tile(path, self.model_input, limits, sensor, band_names, name)

    def detect_file(
        self,
        path: str | Path,
        options: DetectOptions | None = None,
        tile_id: str | None = None,
        sensor: str = "",
        band_names: list[str] | None = None,
        cancelled: Cancelled | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> TileResult:
        with self.open(path, sensor, band_names, name=str(path)) as scene:
            tile_id = tile_id or tile_id_for(path=path)
            return self.detect(scene, options, tile_id, cancelled, progress)

    def detect(
        self,
        scene: Scene,
        options: DetectOptions | None = None,
        tile_id: str = "tile",
        cancelled: Cancelled | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> TileResult:
        """All sites of one scene, best first; ``progress(windows_done, windows_total)``."""
        options = options or DetectOptions()
        result = self._result(scene, tile_id, options)
        for step in self.iter_detect(scene, options, tile_id, cancelled, number=False):
            result.sites.extend(step.sites)
            result.windows_skipped = step.windows_skipped
            if progress is not None:
                progress(step.windows_done, step.windows_total)
        result.sites.sort(key=lambda s: -s.score)
        if options.max_detections:
            del result.sites[options.max_detections :]
        for n, site in enumerate(result.sites):
            site.site_id = f"{tile_id}/{n}"
        return result

    def iter_detect(
        self,
        scene: Scene,
        options: DetectOptions,
        tile_id: str,
        cancelled: Cancelled | None = None,
        number: bool = True,
    ) -> Iterator[Progress]:
        """Sites as they become final, window row by window row (for streaming).

        ``max_detections`` is not applied here (the best sites are not known until the end).
        """
        g = scene.grid
        windows = list(iter_windows(g.height, g.width, self.windows))
        rows = sorted({int(w.row_off) for w in windows})
        next_row = {r: (rows[i + 1] if i + 1 < len(rows) else g.height) for i, r in enumerate(rows)}
        merger = SeamMerger(self.merge_iou)
        floor = options.min_score * 0.5  # keep weaker parts: the merged score decides
        done, valid, skipped, counter = 0, 0, 0, [0]
        pending: list[tuple[list[int], Future]] = []

        def finish(batch: list[int], future: Future) -> Iterator[Progress]:
            nonlocal done
            for k, inst in zip(batch, future.result(), strict=True):
                window = windows[k]
                merger.add(self._detections(window, inst, floor, support.pop(k, None)))
                done += 1
                row = int(window.row_off)
                if k == len(windows) - 1 or int(windows[k + 1].row_off) != row:
                    final = merger.pop_final(next_row[row])
                    sites = self._sites(final, scene, options, tile_id, counter if number else None)
                    yield Progress(sites, done, len(windows), skipped)

        batch: list[int] = []
        arrays: list[np.ndarray | None] = []
        support: dict[int, np.ndarray] = {}  # window -> grouped candidate pixels (site test)
        strips = _StripReader(scene, rows, self.windows.size)
        try:
            strip, strip_row = np.empty(0), -1
            for i, window in enumerate(windows):
                if cancelled and cancelled():
                    self._cancel(pending)
                    raise ServiceError(ServiceReason.CANCELLED, "the request was cancelled")
                row, col = int(window.row_off), int(window.col_off)
                if row != strip_row:
                    strip, strip_row = strips.get(row), row
                data: np.ndarray | None = strip[:, :, col : col + int(window.width)]
                if np.isnan(data).all():
                    data = None  # nodata window: nothing to find, skip the model
                else:
                    valid += 1
                    if self.spectral is not None:
                        pixels = self.spectral.grouped(data)
                        if self.skip_windows and not self.spectral.enough(pixels):
                            data, skipped = None, skipped + 1  # no water, no bare soil: no site
                        elif self.site_test:
                            support[i] = pixels
                batch.append(i)
                arrays.append(data)
                last = i == len(windows) - 1
                if len(batch) == self.max_batch or last:
                    pending.append((batch, self._submit(arrays, floor)))
                    batch, arrays = [], []
                    while len(pending) > 1 or (pending and last):  # read ahead while the model runs
                        yield from finish(*pending.pop(0))
        finally:
            strips.close()
        if valid == 0:
            raise ImageryError(
                Reason.ALL_NODATA,
                "every pixel of the tile is nodata; check the tile's nodata value and footprint",
                scene.path,
            )
        rest = self._sites(merger.flush(), scene, options, tile_id, counter if number else None)
        if rest:
            yield Progress(rest, done, len(windows), skipped)

    # -- stages ---------------------------------------------------------------------------------
    def _submit(self, arrays: list[np.ndarray | None], floor: float) -> Future:
        """Pad windows to the chip size, run the non-empty ones; the future gives one
        ``Instances`` (or None for a nodata window) per window."""
        size = self.windows.size
        idx = [k for k, a in enumerate(arrays) if a is not None]
        out: Future = Future()
        if not idx:
            out.set_result([None] * len(arrays))
            return out
        stack = np.empty((len(idx), len(self.model_input.bands), size, size), np.float32)
        for j, k in enumerate(idx):
            a = arrays[k]
            if a.shape[1:] != (size, size):
                stack[j] = np.nan  # padding is nodata
            stack[j, :, : a.shape[1], : a.shape[2]] = a
        inner = self.runner.submit(stack, floor)

        def done(f: Future) -> None:
            if f.cancelled():
                out.cancel()
                return
            if f.exception() is not None:
                out.set_exception(f.exception())
                return
            results: list[Any] = [None] * len(arrays)
            for j, k in enumerate(idx):
                results[k] = f.result()[j]
            out.set_result(results)

        inner.add_done_callback(done)
        out.inner = inner  # type: ignore[attr-defined]  # for cancellation
        return out

    @staticmethod
    def _cancel(pending: list[tuple[list[int], Future]]) -> None:
        for _, future in pending:
            inner = getattr(future, "inner", None)
            if inner is not None:
                inner.cancel()

    def _detections(
        self, window: Window, inst: Any, floor: float, support: np.ndarray | None
    ) -> list[Detection]:
        if inst is None or len(inst.scores) == 0:
            return []
        h, w = int(window.height), int(window.width)
        c0, r0 = int(window.col_off), int(window.row_off)
        box = (c0, r0, c0 + w, r0 + h)
        out = []
        for mask, score, cls in zip(inst.masks, inst.scores, inst.classes, strict=True):
            if score < floor:
                continue
            mask = np.asarray(mask[:h, :w], bool)  # drop the padding
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                continue
            if support is not None and not self.spectral.enough(mask & support):
                continue  # no water or bare soil under it: cloud, shadow or forest
            crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            # Exact pixel outlines: simplifying would cost small sites (a few px) their shape.
            geom = mask_to_geometry(
                crop, Affine.translation(c0 + cols[0], r0 + rows[0]), simplify_px=0
            )
            if geom is not None:
                out.append(Detection(geom, float(score), int(cls), box))
        return out

    def _sites(
        self,
        merged: list[MergedSite],
        scene: Scene,
        options: DetectOptions,
        tile_id: str,
        counter: list[int] | None,
    ) -> list[Site]:
        crs = scene.grid.crs
        out = []
        for m in merged:
            if m.score < options.min_score:
                continue
            native = to_map_space(m.geom, scene.grid.transform)
            geom = reproject(native, crs, options.output_crs)
            site_id = ""
            if counter is not None:
                site_id = f"{tile_id}/{counter[0]}"
                counter[0] += 1
            out.append(
                Site(
                    site_id=site_id,
                    class_name=self.classes[m.class_index],
                    score=round(m.score, 6),
                    geometry=geom,
                    bbox=tuple(geom.bounds),
                    area_m2=area_m2(native, crs),
                    tile_id=tile_id,
                )
            )
        return out

    def _result(self, scene: Scene, tile_id: str, options: DetectOptions) -> TileResult:
        g = scene.grid
        n = len(list(iter_windows(g.height, g.width, self.windows)))
        return TileResult(
            tile_id, crs_name(options.output_crs), g.width, g.height, n, grid_check=scene.grid_check
        )


class _StripReader:
    """Reads one full-width strip per window row (each GeoTIFF block is decoded once, with GDAL's
    threads), the next strip in the background while the current one is processed."""

    def __init__(self, scene: Scene, rows: list[int], size: int) -> None:
        self.scene, self.rows, self.size = scene, rows, size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="strip")
        self._ahead: dict[int, Future] = {}

    def _submit(self, row: int) -> None:
        if row not in self._ahead:
            g = self.scene.grid
            height = min(self.size, g.height - row)
            self._ahead[row] = self._pool.submit(self.scene.read, Window(0, row, g.width, height))

    def get(self, row: int) -> np.ndarray:
        self._submit(row)
        k = self.rows.index(row)
        if k + 1 < len(self.rows):
            self._submit(self.rows[k + 1])
        return self._ahead.pop(row).result()

    def close(self) -> None:
        for future in self._ahead.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def crs_name(crs: str) -> str:
    """'epsg:4326' / WKT -> 'EPSG:4326' where an authority code exists."""
    c = as_crs(crs)
    auth = c.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else c.to_string()


def sites_to_geojson(sites: list[Site], crs: str = "EPSG:4326") -> dict[str, Any]:
    from imagery.geometry import feature, feature_collection

    feats = [
        feature(
            s.geometry,
            {
                "site_id": s.site_id,
                "class": s.class_name,
                "score": s.score,
                "area_m2": s.area_m2,
                "tile_id": s.tile_id,
            },
        )
        for s in sites
    ]
    return feature_collection(feats, crs)


def dumps_geometry(geom: BaseGeometry) -> str:
    return json.dumps(mapping(geom))
