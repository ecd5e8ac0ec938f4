"""The gRPC server: thread pool, message limits, admission, health, reflection, TLS, token, metrics.

Start-up order: bind and answer health checks (NOT_SERVING), load the bundle, warm the model up,
then report SERVING. ``stop`` reports NOT_SERVING, refuses new calls and lets running ones finish
within the grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from asmspotter.v1 import detection_pb2, detection_pb2_grpc
from imagery.errors import AsmSpotterError, Reason
from service.admission import Admission
from service.auth import BearerTokenInterceptor
from service.metrics import ServiceMetrics
from service.predictor import Predictor
from service.servicer import DetectionServicer
from service.tiles import TileLimits

log = logging.getLogger(__name__)
SERVICE_NAME = detection_pb2.DESCRIPTOR.services_by_name["DetectionService"].full_name
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"
MiB = 1024**2


@dataclass
class ServerConfig:
    address: str = "127.0.0.1:50051"
    bundle: str | None = None  # None: service/default_bundle
    device: str | None = None  # None: cuda when present, else cpu
    precision: str = "auto"  # auto: bf16/fp16 on GPU, fp32 on CPU
    max_active: int = 2  # requests running at once (their windows share model batches)
    max_queued: int = 8  # requests waiting; beyond this RESOURCE_EXHAUSTED at once
    max_message_bytes: int = 64 * MiB
    max_scene_bytes: int = 4096 * MiB  # DetectScene streams
    max_uploads: int | None = None  # DetectScene streams being received; None: active + queued
    stream_idle_s: float = 30.0  # longest pause between two messages of a DetectScene stream
    max_tile_pixels: int = 10980 * 10980
    max_batch: int = 8  # windows per model batch
    max_wait_ms: float = 5.0  # dynamic batching: longest wait for more windows
    model_workers: int = 1  # threads running model batches (2 can help on a GPU)
    overlap: int | None = None  # window overlap in px; None: chip_size // 4
    prefilter: bool = True  # skip windows with no water and no bare soil (service/prefilter.py)
    site_test: bool = True  # drop detections with no water/bare-soil pixels under them
    allowed_root: str | None = None  # URIs are read only under this folder
    token: str | None = None  # bearer token; None: no authentication
    tls_cert: str | None = None
    tls_key: str | None = None
    metrics_port: int | None = None  # None: no /metrics; 0: a free port
    metrics_host: str = "127.0.0.1"
    grace_s: float = 30.0
    spool_dir: str | None = None
    extra_options: list[tuple[str, Any]] = field(default_factory=list)


def load_model(bundle: str | Path | None, device: str | None = None) -> Any:
    """Load a bundle folder (default: the packaged one) as a DetectionModel."""
    path = Path(bundle) if bundle else DEFAULT_BUNDLE
    if not (path / "bundle.json").is_file():
        hint = "pass --bundle DIR" if bundle is None else "a bundle folder holds bundle.json"
        raise AsmSpotterError(Reason.BUNDLE_INVALID, f"no model bundle here; {hint}", str(path))
    from training.model import load_bundle

    return load_bundle(path, device=device)  # None: cuda when present (training.devices)


class DetectionServer:
    """One server process. ``model`` may be passed already loaded (tests, benchmarks)."""

    def __init__(self, config: ServerConfig, model: Any = None) -> None:
        self.config = config
        os.environ.setdefault("GDAL_NUM_THREADS", "ALL_CPUS")  # parallel GeoTIFF block decoding
        self.metrics = ServiceMetrics()
        self.admission = Admission(config.max_active, config.max_queued, self._on_queue)
        self.servicer = DetectionServicer(
            self.admission,
            self.metrics,
            TileLimits(config.max_message_bytes, config.max_tile_pixels),
            TileLimits(config.max_scene_bytes, config.max_tile_pixels),
            config.allowed_root,
            config.spool_dir,
            max_uploads=config.max_uploads or config.max_active + config.max_queued,
            stream_idle_s=config.stream_idle_s,
        )
        self.health = health.HealthServicer()
        self._model = model
        self._server: grpc.Server | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self._stopped = threading.Event()

    def _on_queue(self, active: int, waiting: int) -> None:
        self.metrics.in_flight.set(active)
        self.metrics.queue_depth.set(waiting)

    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def start(self) -> int:
        """Bind and start answering (health NOT_SERVING); returns the bound port."""
        c = self.config
        uploads = c.max_uploads or c.max_active + c.max_queued
        # running, queued and receiving calls, plus spare threads for overload answers and health
        workers = c.max_active + c.max_queued + uploads + 8
        options = [
            ("grpc.max_receive_message_length", c.max_message_bytes + MiB),
            ("grpc.max_send_message_length", c.max_message_bytes + MiB),
            ("grpc.so_reuseport", 0),
            *c.extra_options,
        ]
        interceptors = [BearerTokenInterceptor(c.token)] if c.token else []
        from concurrent.futures import ThreadPoolExecutor

        server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
            interceptors=interceptors,
            options=options,
        )
        detection_pb2_grpc.add_DetectionServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        if c.tls_cert or c.tls_key:
            if not (c.tls_cert and c.tls_key):
                raise AsmSpotterError(Reason.INVALID_ARGUMENT, "TLS needs both a cert and a key")
            creds = grpc.ssl_server_credentials(
                [(Path(c.tls_key).read_bytes(), Path(c.tls_cert).read_bytes())]
            )
            self.port = server.add_secure_port(c.address, creds)
        else:
            self.port = server.add_insecure_port(c.address)
        if not self.port:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"cannot bind {c.address}")
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        server.start()
        self._server = server
        if c.metrics_port is not None:
            self.metrics_port = self.metrics.start_http(c.metrics_port, c.metrics_host)
        log.info("listening on port %d", self.port)
        return self.port

    def load(self) -> None:
        """Load (unless given) and warm up the model, then report SERVING."""
        c = self.config
        model = self._model if self._model is not None else load_model(c.bundle, c.device)
        predictor = Predictor(
            model,
            overlap=c.overlap,
            max_batch=c.max_batch,
            max_wait_s=c.max_wait_ms / 1000,
            precision=c.precision,
            limits=self.servicer.limits,
            on_batch=self.metrics.on_batch,
            model_workers=c.model_workers,
            prefilter=c.prefilter,
            site_test=c.site_test,
        )
        predictor.warm_up()
        self.servicer.predictor = predictor
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("model %s %s ready", model.info.get("name"), model.info.get("version"))

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, no new calls, running calls finish within ``grace``."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(self.config.grace_s if grace is None else grace).wait()
        if self.servicer.predictor is not None:
            self.servicer.predictor.close()
        self.metrics.stop_http()


def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully (the ``serve`` command)."""
    server = DetectionServer(config)
    port = server.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down (grace %.0f s)", signum, config.grace_s)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.load()
        host = config.address.rsplit(":", 1)[0]
        print(f"serving on {host}:{port} (pid {os.getpid()})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
