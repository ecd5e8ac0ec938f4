"""The thin gRPC servicer: protobuf <-> ``Predictor`` calls, admission, metrics, error statuses."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import grpc

from asmspotter.v1 import detection_pb2 as pb
from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from imagery.errors import AsmSpotterError, Reason
from imagery.gsd import GridCheck
from service.admission import Admission
from service.errors import (
    ServiceError,
    ServiceReason,
    abort,
    code_name,
    status_from_exception,
)
from service.metrics import ServiceMetrics
from service.predictor import DetectOptions, Predictor, Site, tile_id_for
from service.predictor import dumps_geometry as _geojson
from service.tiles import SpooledTile, TileLimits, check_size, check_tiff_magic, resolve_uri
from service.uploads import ReceivedScene, SceneUploads

log = logging.getLogger(__name__)
T = TypeVar("T")
CLASS_ENUM = {"pit": pb.SITE_CLASS_PIT, "pond": pb.SITE_CLASS_POND}


def options_from_proto(msg: pb.DetectionOptions) -> DetectOptions:
    return DetectOptions(
        min_score=msg.min_score if msg.HasField("min_score") else None,  # None: the bundle's
        output_crs=msg.output_crs or "EPSG:4326",
        max_detections=msg.max_detections,
    )


def site_to_proto(site: Site) -> pb.Site:
    x0, y0, x1, y1 = site.bbox
    return pb.Site(
        site_id=site.site_id,
        site_class=CLASS_ENUM.get(site.class_name, pb.SITE_CLASS_UNSPECIFIED),
        score=site.score,
        geometry_geojson=_geojson(site.geometry),
        bbox=pb.BoundingBox(min_x=x0, min_y=y0, max_x=x1, max_y=y1),
        area_m2=site.area_m2,
        tile_id=site.tile_id,
    )


def grid_check_to_proto(check: GridCheck | None) -> pb.GridCheck | None:
    return pb.GridCheck(**asdict(check)) if check is not None else None


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Nested bundle metrics -> {"a/b": number} (non-numeric leaves are left out)."""
    out: dict[str, float] = {}
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            out.update(flatten_metrics(value, f"{prefix}{key}/"))
    elif isinstance(metrics, int | float) and not isinstance(metrics, bool):
        out[prefix.rstrip("/")] = float(metrics)
    return out


class DetectionServicer(pb_grpc.DetectionServiceServicer):
    def __init__(
        self,
        admission: Admission,
        metrics: ServiceMetrics,
        limits: TileLimits,
        scene_limits: TileLimits,
        allowed_root: str | Path | None = None,
        spool_dir: str | None = None,
        max_uploads: int = 10,
        stream_idle_s: float = 30.0,
    ) -> None:
        self.predictor: Predictor | None = None  # set once the model is loaded and warm
        self.admission = admission
        self.metrics = metrics
        self.limits = limits
        self.scene_limits = scene_limits
        self.allowed_root = allowed_root
        self.spool_dir = spool_dir
        self.uploads = SceneUploads(
            max_uploads, stream_idle_s, scene_limits, spool_dir, allowed_root
        )

    # -- plumbing -------------------------------------------------------------------------------
    def _ready(self) -> Predictor:
        if self.predictor is None:
            raise ServiceError(
                ServiceReason.NOT_READY, "the model is still loading; retry in a few seconds"
            )
        return self.predictor

    def _fail(
        self, method: str, context: grpc.ServicerContext, exc: Exception, started: float
    ) -> None:
        if not context.is_active():  # the caller went away: not a server error
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                exc = ServiceError(ServiceReason.DEADLINE_EXCEEDED, "the deadline passed")
            else:
                exc = ServiceError(ServiceReason.CANCELLED, "the caller cancelled the call")
            log.info("%s: %s", method, exc)
        elif not isinstance(exc, AsmSpotterError | ServiceError):
            log.exception("%s failed", method)
        self._record(method, code_name(status_from_exception(exc).code), started, context, exc)
        abort(context, exc)

    def _record(
        self,
        method: str,
        code: str,
        started: float,
        context: grpc.ServicerContext,
        detail: object = "",
    ) -> None:
        """Metrics and one request log line: method, status, seconds, peer (and the reason)."""
        self.metrics.observe(method, code, started)
        elapsed = time.perf_counter() - started
        reason = getattr(detail, "reason", "")
        log.info(
            "%s %s%s %.3fs peer=%s", method, code, f" [{reason}]" if reason else "", elapsed,
            context.peer(),
        )  # fmt: skip

    def _unary(self, method: str, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            self._ready()
            with self.admission.slot(context.time_remaining, context.is_active):
                result = work()
        except Exception as exc:
            self._fail(method, context, exc, started)
            raise  # not reached: abort raises
        self._record(method, "OK", started, context)
        return result

    def _cancelled(self, context: grpc.ServicerContext) -> Callable[[], bool]:
        return lambda: not context.is_active()

    def _model_version(self) -> pb.ModelVersion:
        return pb.ModelVersion(**self._ready().version)

    # -- one tile -------------------------------------------------------------------------------
    def _detect(
        self, req: pb.DetectTileRequest, context: grpc.ServicerContext
    ) -> pb.TileDetections:
        predictor = self._ready()
        options = options_from_proto(req.options)
        tile = req.tile
        source = tile.WhichOneof("source")
        spool = None
        try:
            if source == "content":
                tile_id = tile.tile_id or tile_id_for(content=tile.content)
                check_tiff_magic(tile.content[:4], tile_id)
                check_size(len(tile.content), self.limits, tile_id)
                spool = SpooledTile(tile_id, self.limits, self.spool_dir)
                with spool.naming():
                    spool.write(tile.content)
                path, name = spool.finish(), tile_id
            elif source == "uri":  # a local file: only the pixel limit applies
                path, name = resolve_uri(tile.uri, self.allowed_root), tile.uri
                tile_id = tile.tile_id or tile_id_for(path=path)
            else:
                raise AsmSpotterError(
                    Reason.INVALID_ARGUMENT, "the tile has neither content nor uri; set one"
                )
            limits = self.limits if source == "content" else self.scene_limits
            with (
                spool.naming() if spool is not None else contextlib.nullcontext(),
                predictor.open(
                    path, tile.sensor, list(tile.band_names), name=name, limits=limits
                ) as scene,
            ):
                result = predictor.detect(scene, options, tile_id, self._cancelled(context))
        finally:
            if spool is not None:
                spool.close()
        self.metrics.sites.inc(len(result.sites))
        return pb.TileDetections(
            tile_id=result.tile_id,
            sites=[site_to_proto(s) for s in result.sites],
            crs=result.crs,
            width=result.width,
            height=result.height,
            window_count=result.window_count,
            grid_check=grid_check_to_proto(result.grid_check),
        )

    # -- RPCs -----------------------------------------------------------------------------------
    def DetectTile(  # noqa: N802 (gRPC method name)
        self, request: pb.DetectTileRequest, context: grpc.ServicerContext
    ) -> pb.DetectTileResponse:
        def work() -> pb.DetectTileResponse:
            detections = self._detect(request, context)
            return pb.DetectTileResponse(detections=detections, model=self._model_version())

        return self._unary("DetectTile", context, work)

    def BatchDetectTiles(  # noqa: N802
        self, request: pb.BatchDetectTilesRequest, context: grpc.ServicerContext
    ) -> pb.BatchDetectTilesResponse:
        def work() -> pb.BatchDetectTilesResponse:
            results = []
            for req in request.requests:
                try:
                    results.append(pb.BatchDetectTilesResult(detections=self._detect(req, context)))
                except ServiceError:  # cancelled or past the deadline: the whole call ends
                    raise
                except Exception as exc:  # this tile only; the batch goes on
                    if not isinstance(exc, AsmSpotterError):
                        log.exception("BatchDetectTiles: tile %d failed", len(results))
                    results.append(pb.BatchDetectTilesResult(error=status_from_exception(exc)))
            return pb.BatchDetectTilesResponse(results=results, model=self._model_version())

        return self._unary("BatchDetectTiles", context, work)

    def GetModel(  # noqa: N802
        self, request: pb.GetModelRequest, context: grpc.ServicerContext
    ) -> pb.GetModelResponse:
        def work() -> pb.GetModelResponse:
            predictor = self._ready()
            info = predictor.info
            return pb.GetModelResponse(
                model=pb.Model(
                    name=str(info.get("name", "")),
                    version=str(info.get("version", "")),
                    engine=str(info.get("engine", "")),
                    sensor=str(info.get("sensor", "")),
                    band_names=list(info.get("bands", [])),
                    chip_size=int(info.get("chip_size", 0)),
                    classes=list(info.get("classes", [])),
                    metrics=flatten_metrics(info.get("metrics", {})),
                    weights_sha256=str(info.get("weights_sha256", "")),
                    create_time=str(info.get("created", "")),
                    device=str(getattr(predictor.model, "device", "cpu")),
                )
            )

        started = time.perf_counter()
        try:
            response = work()  # cheap: no admission slot
        except Exception as exc:
            self._fail("GetModel", context, exc, started)
            raise
        self._record("GetModel", "OK", started, context)
        return response

    def DetectScene(  # noqa: N802
        self, request_iterator: Iterator[pb.DetectSceneRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.DetectSceneResponse]:
        """The scene is received whole (``service/uploads.py``) before it asks for an admission
        slot: stalled or slow streams hold no inference capacity."""
        started = time.perf_counter()
        try:
            predictor = self._ready()
            with self.uploads.receive(request_iterator, context) as received:
                with self.admission.slot(context.time_remaining, context.is_active):
                    yield from self._scene(predictor, received, context)
        except Exception as exc:
            self._fail("DetectScene", context, exc, started)
            raise
        self._record("DetectScene", "OK", started, context)

    def _scene(
        self, predictor: Predictor, received: ReceivedScene, context: grpc.ServicerContext
    ) -> Iterator[pb.DetectSceneResponse]:
        tile, options = received.header.tile, options_from_proto(received.header.options)
        version = self._model_version()
        with predictor.open(
            received.path,
            tile.sensor,
            list(tile.band_names),
            name=received.name,
            limits=self.scene_limits,
        ) as scene:
            total, grid = 0, grid_check_to_proto(scene.grid_check)
            for step in predictor.iter_detect(
                scene, options, received.tile_id, self._cancelled(context)
            ):
                total = step.windows_total
                self.metrics.sites.inc(len(step.sites))
                yield pb.DetectSceneResponse(
                    sites=[site_to_proto(s) for s in step.sites],
                    windows_done=step.windows_done,
                    windows_total=step.windows_total,
                    model=version,
                    grid_check=grid,
                )
            yield pb.DetectSceneResponse(
                windows_done=total,
                windows_total=total,
                done=True,
                model=version,
                grid_check=grid,
            )
