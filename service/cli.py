"""Service sub-commands: ``serve``, ``detect``, ``submit``, ``models``.

Only ``serve`` and ``detect --local`` need torch, and they import it when run, so the client
commands work from a client-only install.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagery import feedback
from imagery.cli import band_order_arg
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import feature_collection
from service.client.common import wait_until_serving
from service.client.outputs import write_json_atomic
from service.client.types import DetectionError, Site

DEFAULT_SERVER = os.environ.get("ASMSPOTTER_SERVER", "127.0.0.1:50051")


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help="HOST:PORT[,HOST:PORT...]; a name with several addresses spreads the calls over"
        " them (env ASMSPOTTER_SERVER)",
    )
    p.add_argument("--token-file", help="file holding the bearer token (env ASMSPOTTER_TOKEN)")
    p.add_argument("--tls-ca", help="PEM of the CA that signed the server's certificate")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per tile")


def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-score",
        type=float,
        help="minimum site score (default: the bundle's default threshold)",
    )
    p.add_argument("--crs", default="EPSG:4326", help="output CRS (default EPSG:4326)")
    p.add_argument("--max-detections", type=int, default=0, help="per tile; 0: no limit")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the gRPC detection server")
    p.add_argument("--address", default="127.0.0.1:50051", help="HOST:PORT to listen on")
    p.add_argument("--bundle", help="model bundle folder (default: the packaged bundle)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--max-active", type=int, default=2, help="requests running at once")
    p.add_argument("--max-queued", type=int, default=8, help="requests waiting; then refused")
    p.add_argument("--max-batch", type=int, default=8, help="windows per model batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="dynamic batching wait")
    p.add_argument("--model-workers", type=int, default=1, help="threads running batches")
    p.add_argument("--max-message-mb", type=int, default=64, help="largest message")
    p.add_argument("--overlap", type=int, help="window overlap in px (default chip_size/4)")
    p.add_argument(
        "--no-prefilter",
        action="store_true",
        help="run the model on every valid window (default: skip windows with no water/bare soil)",
    )
    p.add_argument(
        "--no-site-test",
        action="store_true",
        help="keep detections with no water/bare-soil pixels under them (cloud/forest alarms)",
    )
    p.add_argument("--allowed-root", help="folder whose files may be named by URI")
    p.add_argument("--token-file", help="require this bearer token (env ASMSPOTTER_TOKEN)")
    p.add_argument("--tls-cert", help="server certificate (PEM)")
    p.add_argument("--tls-key", help="server private key (PEM)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to finish work on stop")
    p.set_defaults(handler=_serve)

    p = subparsers.add_parser("detect", help="detect sites in tiles (server or --local)")
    p.add_argument("tiles", nargs="+", help="stacked GeoTIFF tiles")
    p.add_argument("-o", "--out", required=True, help="GeoJSON file to write")
    p.add_argument("--local", action="store_true", help="run the model in this process")
    p.add_argument("--bundle", help="with --local: model bundle folder")
    p.add_argument(
        "--no-prefilter",
        action="store_true",
        help="with --local: run the model on every valid window (no water/soil prefilter)",
    )
    p.add_argument(
        "--no-site-test",
        action="store_true",
        help="with --local: keep detections with no water/bare-soil pixels under them",
    )
    band_order_arg(p)
    _client_args(p)
    _detect_args(p)
    p.set_defaults(handler=_detect)

    p = subparsers.add_parser("submit", help="send a folder/glob/list of tiles to the server")
    p.add_argument("inputs", nargs="+", help="folders, globs or files")
    p.add_argument(
        "-o", "--out", required=True, help="folder for the manifest, per-tile results and sites"
    )
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--retry-errors", action="store_true", help="retry tiles that failed before")
    p.add_argument("--no-progress", action="store_true")
    _client_args(p)
    _detect_args(p)
    p.set_defaults(handler=_submit)

    p = subparsers.add_parser("models", help="describe the server's (or a bundle's) model")
    p.add_argument("--bundle", help="describe this bundle folder instead of asking a server")
    _client_args(p)
    p.set_defaults(handler=_models)


def _token(path: str | None) -> str | None:
    if path:
        return Path(path).read_text().strip()
    return os.environ.get("ASMSPOTTER_TOKEN") or None


def _client(args: argparse.Namespace) -> Any:
    from service.client.pool import connect  # several servers: round-robin with failover

    ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    return connect(
        args.server, token=_token(args.token_file), tls_root_cert=ca, timeout_s=args.timeout
    )


def _fail(err: DetectionError) -> int:
    print(f"error [{err.reason}]: {err.message}", file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    from service.server import ServerConfig, serve

    for flag, path in (("--allowed-root", args.allowed_root), ("--bundle", args.bundle)):
        if path and not Path(path).is_dir():  # before binding the port
            raise AsmSpotterError(Reason.FILE_NOT_FOUND, f"{flag}: no such folder", path)

    feedback.configure_server()
    config = ServerConfig(
        address=args.address,
        bundle=args.bundle,
        device=args.device,
        precision=args.precision,
        max_active=args.max_active,
        max_queued=args.max_queued,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        model_workers=args.model_workers,
        max_message_bytes=args.max_message_mb * 1024**2,
        overlap=args.overlap,
        prefilter=not args.no_prefilter,
        site_test=not args.no_site_test,
        allowed_root=args.allowed_root,
        token=_token(args.token_file),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        grace_s=args.grace,
    )
    return serve(config)


def _site_features(
    sites: list[Site], tile: str, name: str, version: str, weights_sha256: str
) -> list[dict[str, Any]]:
    return [
        s.feature(
            source=tile, model_name=name, model_version=version, weights_sha256=weights_sha256
        )
        for s in sites
    ]


def _notice(tile: str, check: Any) -> None:
    if check is not None and check.notice:
        feedback.notice(f"{tile}: {check.notice}")


@contextmanager
def window_bar(tile: str) -> Iterator[Callable[[int, int], None]]:
    """``update(windows_done, windows_total)`` drawing a bar for one tile (see imagery.feedback)."""
    shown: list[Any] = []

    def update(done: int, total: int) -> None:
        if not shown:
            shown.append(feedback.bar(total=total, desc=Path(tile).name, unit="window"))
        shown[0].n = done
        shown[0].refresh()

    try:
        yield update
    finally:
        for b in shown:
            b.close()


def _detect(args: argparse.Namespace) -> int:
    from imagery.scene import check_geotiff

    for tile in args.tiles:  # before loading a model or connecting: one line per bad path
        check_geotiff(tile)
    features: list[dict[str, Any]] = []
    identity: dict[str, str] | None = None  # the model's, once a tile was answered
    failed = 0
    bands = args.band_order or ()
    if args.local:
        from service.predictor import DetectOptions, Predictor
        from service.server import load_model

        predictor = Predictor(
            load_model(args.bundle),
            prefilter=not args.no_prefilter,
            site_test=not args.no_site_test,
        )
        options = DetectOptions(args.min_score, args.crs, args.max_detections)
        try:
            for tile in args.tiles:
                with window_bar(tile) as on_progress:
                    result = predictor.detect_file(
                        tile, options, band_names=list(bands) or None, progress=on_progress
                    )
                _notice(tile, result.grid_check)
                v = predictor.version
                identity = {
                    "model_name": v["name"],
                    "model_version": v["version"],
                    "weights_sha256": v["weights_sha256"],
                }
                sites = [  # the SDK's Site, so both paths write the same properties
                    Site(
                        s.site_id, s.class_name, s.score, s.geojson(), s.bbox, s.area_m2, s.tile_id
                    )
                    for s in result.sites
                ]
                features += _site_features(
                    sites, tile, v["name"], v["version"], v["weights_sha256"]
                )
        finally:
            predictor.close()
    else:
        with _client(args) as client:
            try:
                wait_until_serving(client, args.timeout, f"the server at {args.server}")
            except DetectionError as err:
                return _fail(err)
            for tile in args.tiles:
                try:
                    with window_bar(tile) as on_progress:
                        result = client.detect_tile(
                            tile,
                            min_score=args.min_score,
                            output_crs=args.crs,
                            max_detections=args.max_detections,
                            band_names=bands,
                            on_progress=on_progress,
                        )
                except DetectionError as err:
                    if len(args.tiles) == 1:
                        return _fail(err)
                    print(f"error [{err.reason}] {tile}: {err.message}", file=sys.stderr)
                    failed += 1
                    continue
                _notice(tile, result.grid_check)
                m = result.model
                identity = {
                    "model_name": m.name,
                    "model_version": m.version,
                    "weights_sha256": m.weights_sha256,
                }
                features += _site_features(result.sites, tile, m.name, m.version, m.weights_sha256)
    # the model's identity also on the collection: a tile with no site still says who looked
    out = write_json_atomic(Path(args.out), feature_collection(features, args.crs, identity))
    done = len(args.tiles) - failed
    print(f"{len(features)} sites found in {done} tile(s); GeoJSON: {out}")
    return 2 if failed else 0


def _submit(args: argparse.Namespace) -> int:
    from service.client.batch import expand_inputs, submit_batch, summary_line

    if not any(p.exists() for p in expand_inputs(args.inputs)):  # before connecting
        raise AsmSpotterError(
            Reason.FILE_NOT_FOUND,
            f"no tile matches {' '.join(args.inputs)} (folders are searched for .tif/.tiff)",
        )
    with _client(args) as client:
        try:
            wait_until_serving(client, args.timeout, f"the server at {args.server}")
        except DetectionError as err:
            return _fail(err)
        report = submit_batch(
            client,
            args.inputs,
            args.out,
            min_score=args.min_score,
            output_crs=args.crs,
            max_detections=args.max_detections,
            concurrency=args.concurrency,
            progress=not args.no_progress,
            retry_errors=args.retry_errors,
            timeout=args.timeout,
        )
    print(summary_line(report))
    return 2 if report.failed else 0


def _models(args: argparse.Namespace) -> int:
    if args.bundle:
        path = Path(args.bundle) / "bundle.json"
        if not path.is_file():
            raise AsmSpotterError(Reason.BUNDLE_INVALID, "no bundle.json here", args.bundle)
        info = json.loads(path.read_text())
        info.pop("config", None)
    else:
        from dataclasses import asdict

        with _client(args) as client:
            try:
                info = asdict(client.get_model())
            except DetectionError as err:
                return _fail(err)
    print(json.dumps(info, indent=2))
    return 0
