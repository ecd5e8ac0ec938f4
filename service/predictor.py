"""The transport-free predictor: tile -> windows -> model -> merged sites -> georeferenced polygons.

One module per stage of the data path, joined here: ``service.tiles`` (intake and checks),
``service.windows`` (the window source with the prefilter), ``service.batching`` (model batches
shared by concurrent requests), ``service.polygons`` (masks to polygons, seam merge),
``service.sites`` (the site scorer, the ``min_score`` filter, reprojection, area). The gRPC
servicer and the CLI's ``--local`` mode both call ``Predictor``; nothing here knows about gRPC.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pyproj.exceptions import CRSError
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import as_crs
from imagery.gsd import GridCheck
from imagery.scene import Scene
from imagery.windows import WindowSpec, iter_windows
from service.batching import BatchRunner, Model, WindowBatches
from service.merge import MergedSite
from service.polygons import SiteMerger
from service.prefilter import WindowPrefilter
from service.sites import Site, SiteScorer, build_sites, candidates
from service.tiles import LOCAL_FILE_LIMITS, ModelInput, TileLimits, open_tile
from service.windows import WindowSource

__all__ = ["DetectOptions", "Predictor", "Progress", "Site", "TileResult", "tile_id_for"]


@dataclass(frozen=True)
class DetectOptions:
    min_score: float | None = None  # None: the bundle's default threshold
    output_crs: str = "EPSG:4326"
    max_detections: int = 0  # 0: no limit

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
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
class TileResult:
    tile_id: str
    crs: str
    width: int
    height: int
    window_count: int
    sites: list[Site] = field(default_factory=list)
    windows_skipped: int = 0  # valid windows the prefilter kept from the model
    windows_run: int = 0  # windows the model ran on (valid and not skipped)
    grid_check: GridCheck | None = None  # the tile's GSD, and whether it was resampled


@dataclass
class Progress:
    """Sites that became final, and how far the scene is."""

    sites: list[Site]
    windows_done: int
    windows_total: int
    windows_skipped: int = 0  # so far, by the prefilter (nodata windows not counted)
    windows_run: int = 0  # so far, by the model


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
        scorer: SiteScorer | None = None,
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
        # The water/bare-soil test (service/prefilter.py), per scene: it runs when the tile has
        # the optical bands it needs (read besides the model's, ``ModelInput.extra_bands``), and
        # not on tiles without them (RGB-only, Sentinel-1): then every valid window runs and no
        # site is tested. ``prefilter``: skip windows that fail it (the model runs on fewer
        # windows); ``site_test``: drop detections with too few candidate pixels under their
        # mask (false alarms on cloud and forest). With both on, skipping changes nothing: a
        # skipped window could only have yielded detections the site test drops.
        self.skip_windows, self.site_test = prefilter, site_test
        self.runner = BatchRunner(
            model,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            precision=precision,
            on_batch=on_batch,
            workers=model_workers,
        )
        self.batches = WindowBatches(self.runner, chip, max_batch)
        # Rescores each merged site before the min_score filter (service.sites): the one given,
        # else the bundle's own (a context verifier, ``training.verifier``); None: the model's
        # score stands.
        self.scorer = scorer if scorer is not None else getattr(model, "site_scorer", None)

    # -- model identity -------------------------------------------------------------------------
    @property
    def default_min_score(self) -> float:
        """The bundle's default threshold (chosen from its calibration), else 0.5."""
        from training.engines.base import default_threshold  # numpy only

        return default_threshold(self.info)

    @property
    def detector_floor(self) -> float:
        """The lowest model score a site may have to reach the site scorer."""
        from training.engines.base import score_floor  # numpy only

        return score_floor(self.info)

    def resolve(self, options: DetectOptions | None) -> DetectOptions:
        """Options with ``min_score`` set (None: the bundle's default threshold)."""
        options = options or DetectOptions()
        if options.min_score is None:
            options = replace(options, min_score=self.default_min_score)
        return options

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
        options = self.resolve(options)
        result = self._result(scene, tile_id, options)
        for step in self.iter_detect(scene, options, tile_id, cancelled, number=False):
            result.sites.extend(step.sites)
            result.windows_skipped = step.windows_skipped
            result.windows_run = step.windows_run
            if progress is not None:
                progress(step.windows_done, step.windows_total)
        result.sites = best_first(result.sites, options.max_detections, tile_id)
        return result

    def iter_detect(
        self,
        scene: Scene,
        options: DetectOptions,
        tile_id: str,
        cancelled: Cancelled | None = None,
        number: bool = True,
    ) -> Iterator[Progress]:
        """Sites as they become final, window row by window row (for streaming). With
        ``max_detections`` the best sites are known only at the end: they come in the last
        message."""
        options = self.resolve(options)
        spectral = self.spectral_test(scene)
        source = WindowSource(
            scene,
            self.windows,
            spectral,
            self.skip_windows,
            self.site_test,
            model_bands=self.model_input.bands,
        )
        # Keep weaker parts: the merged score decides. With a site scorer the final score is not
        # the model's, so every site the model reports (``detector_floor``) goes to the scorer.
        floor = options.min_score * 0.5 if self.scorer is None else self.detector_floor
        merger = SiteMerger(self.merge_iou, floor, spectral if self.site_test else None)
        numbers = itertools.count() if number and not options.max_detections else None
        held: list[Site] = []  # with max_detections: every site until the end
        total = len(source)
        for item, inst in self.batches.run(source, floor, cancelled):
            final = merger.add(item, inst)
            if item.row_end:
                sites = self._sites(final, scene, options, tile_id, numbers)
                if options.max_detections:
                    held += sites
                    sites = []
                run = source.valid - source.skipped
                yield Progress(sites, item.index + 1, total, source.skipped, run)
        sites = held + self._sites(merger.flush(), scene, options, tile_id, numbers)
        if options.max_detections:
            sites = best_first(sites, options.max_detections, tile_id if number else None)
        if sites:
            yield Progress(sites, total, total, source.skipped, source.valid - source.skipped)

    def spectral_test(self, scene: Scene) -> WindowPrefilter | None:
        """The water/bare-soil test for this scene's bands; None when it is off or the scene
        lacks the bands it needs."""
        if not (self.skip_windows or self.site_test):
            return None
        return WindowPrefilter.for_bands(scene.bands, scene.absent_bands)

    def _sites(
        self,
        merged: list[MergedSite],
        scene: Scene,
        options: DetectOptions,
        tile_id: str,
        numbers: Iterator[int] | None,
    ) -> list[Site]:
        """Stages 4-5: candidates -> the site scorer -> the min_score filter -> sites."""
        found = candidates(merged, scene)
        if self.scorer is not None and found:
            found = self.scorer(scene, found, options.min_score)
        return build_sites(
            found, scene, self.classes, options.min_score, options.output_crs, tile_id, numbers
        )

    def _result(self, scene: Scene, tile_id: str, options: DetectOptions) -> TileResult:
        g = scene.grid
        n = len(list(iter_windows(g.height, g.width, self.windows)))
        return TileResult(
            tile_id, crs_name(options.output_crs), g.width, g.height, n, grid_check=scene.grid_check
        )


def best_first(sites: list[Site], limit: int = 0, tile_id: str | None = None) -> list[Site]:
    """Sites by descending score, at most ``limit`` (0: all), numbered ``tile_id/n`` when given."""
    sites = sorted(sites, key=lambda s: -s.score)
    if limit:
        del sites[limit:]
    if tile_id is not None:
        for n, site in enumerate(sites):
            site.site_id = f"{tile_id}/{n}"
    return sites


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
