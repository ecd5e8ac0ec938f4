"""``asmspotter watch add|list|remove|run``: early warning over watched areas.

Heavy imports (odc-stac, the model, gRPC) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

STORE_HELP = (
    "sqlite:///PATH or postgresql://user@host:port/db (default: $ASMSPOTTER_STORE, else "
    "$XDG_DATA_HOME/asmspotter/monitor.sqlite)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    watch = subparsers.add_parser(
        "watch",
        help="early warning: every new acquisition over watched areas becomes an alert",
        description="Watched areas live in the monitoring store. `watch run` (one pass, for "
        "cron or a Kubernetes CronJob; --loop for a long-lived process) processes every "
        "acquisition newer than the last one seen, exactly once.",
    )
    sub = watch.add_subparsers(dest="watch_command", required=True, metavar="ACTION")

    def store(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", help=STORE_HELP)

    p = sub.add_parser("add", help="watch an area (or update the settings of a watched one)")
    store(p)
    p.add_argument("name", help="the area's name (its identity)")
    p.add_argument("--area", required=True, help="area polygon(s): GeoJSON, GeoPackage, SHP")
    p.add_argument(
        "--stac-url",
        required=True,
        help="STAC API (or static STAC, as `fetch --stac`) searched for acquisitions",
    )
    p.add_argument("--collection", default="sentinel-2-l2a")
    p.add_argument("--since", help="ignore acquisitions before this date (default: today)")
    p.add_argument("--concessions", help="concession polygons (any vector format and CRS)")
    p.add_argument("--protected", help="protected-area polygons")
    p.add_argument("--cadence-hours", type=float, default=24.0, help="search at most this often")
    p.add_argument("--max-cloud", type=float, default=90.0, help="skip scenes cloudier than %%")
    p.add_argument("--resolution", type=float, default=10.0, help="pixel size, metres")
    p.add_argument("--webhook", help="URL that receives each alert as a JSON POST")
    p.add_argument("--webhook-attempts", type=int, default=4, help="tries per pass")
    p.add_argument("--webhook-backoff", type=float, default=2.0, help="first retry wait, s")
    p.add_argument("--confirm-views", type=int, default=2, help="clear views to confirm a site")
    p.add_argument(
        "--alert-when",
        choices=["suspected", "confirmed"],
        default="suspected",
        help="raise an alert at first sight (suspected) or once confirmed",
    )
    p.add_argument("--min-clear", type=float, default=0.5, help="share of a place seen clear")
    p.add_argument("--min-score", type=float, help="score threshold (default: the model's own)")
    p.add_argument("--grow-fraction", type=float, default=0.2)
    p.add_argument("--min-overlap", type=float, default=0.1)
    p.add_argument("--tolerance-m", type=float, default=0.0)
    p.set_defaults(handler=_add)

    p = sub.add_parser("list", help="watched areas and their progress")
    store(p)
    p.set_defaults(handler=_list)

    p = sub.add_parser("remove", help="stop watching an area (its history stays)")
    store(p)
    p.add_argument("name")
    p.set_defaults(handler=_remove)

    p = sub.add_parser("run", help="process every new acquisition of the watched areas")
    store(p)
    p.add_argument("--area", action="append", dest="areas", help="only this area (repeatable)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--bundle", help="model bundle folder (default: the packaged bundle)")
    src.add_argument("--server", help="detection service HOST:PORT")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="where acquisition tiles and evidence packets are kept (default: "
        "$XDG_DATA_HOME/asmspotter/watch, i.e. ~/.local/share/asmspotter/watch)",
    )
    p.add_argument("-o", "--out", type=Path, help="write alerts.geojson/.csv and map.html per area")
    p.add_argument("--force", action="store_true", help="search areas that are not due yet")
    p.add_argument("--no-deliver", action="store_true", help="queue messages, send nothing")
    p.add_argument("--loop", action="store_true", help="run passes until stopped (SIGTERM)")
    p.add_argument("--interval", type=float, default=3600.0, help="seconds between passes")
    p.set_defaults(handler=_run)


def _add(args: argparse.Namespace) -> int:
    from datetime import date

    from imagery.vector import read_features
    from monitoring.areas import Rules, Source, WatchedArea, Webhook, save_area, zones_collection
    from monitoring.fetch import area_geometry
    from monitoring.monitor import iso_date
    from monitoring.store import Store, check_store_url, default_store_url

    url = args.store or default_store_url()
    check_store_url(url)
    area = WatchedArea(
        name=args.name,
        geometry=area_geometry(args.area),
        source=Source(args.stac_url, args.collection, args.max_cloud, args.resolution),
        since=args.since or date.today().isoformat(),
        cadence_hours=args.cadence_hours,
        rules=Rules(
            confirm_views=args.confirm_views,
            alert_when=args.alert_when,
            min_clear_fraction=args.min_clear,
            min_score=args.min_score,
            grow_fraction=args.grow_fraction,
            min_overlap=args.min_overlap,
            tolerance_m=args.tolerance_m,
        ),
        webhook=Webhook(args.webhook, args.webhook_attempts, args.webhook_backoff),
        concessions=zones_collection(read_features(args.concessions)) if args.concessions else None,
        protected=zones_collection(read_features(args.protected)) if args.protected else None,
    )
    area.rules.check()  # every setting checked before a store is opened (or made)
    area.since = iso_date(area.since)
    with Store(url) as s:
        _note_created(s)
        added = save_area(s, area)
    print(f"{'added' if added else 'updated'} watched area {args.name!r} (since {area.since})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from imagery.geometry import area_m2
    from monitoring.areas import area_summary, load_areas
    from monitoring.store import Store, default_store_url

    with Store(args.store or default_store_url(), create=False) as s:
        areas = load_areas(s)
        rows = [(a, area_summary(s, a.name)) for a in areas]
    if not rows:
        print("no watched areas")
    for a, n in rows:
        print(
            f"{a.name}: {area_m2(a.geometry, 4326) / 1e6:.1f} km², {a.source.stac_url} "
            f"({a.source.collection}), every {a.cadence_hours:g} h; last seen "
            f"{a.last_seen or '-'}; {n['acquisitions']} acquisitions; alerts {n['raised']} "
            f"raised, {n['pending']} pending, {n['withdrawn']} withdrawn; "
            f"{n['undelivered']} undelivered; webhook {a.webhook.url or '-'}"
        )
    return 0


def _remove(args: argparse.Namespace) -> int:
    from monitoring.areas import remove_area
    from monitoring.store import Store, default_store_url

    with Store(args.store or default_store_url(), create=False) as s:
        remove_area(s, args.name)
    print(f"removed watched area {args.name!r} (runs, sites and alerts kept)")
    return 0


def _note_created(store: Any) -> None:
    """Say so when a command made a new, empty store (a mistyped --store shows here)."""
    from imagery import feedback
    from monitoring.store import store_label

    if store.created:
        feedback.notice(f"created a new monitoring store: {store_label(store.url)}")


def _detector(args: argparse.Namespace) -> Any:
    from monitoring.detect import BundleDetector, ServerDetector

    if args.server:
        return ServerDetector(args.server)
    if args.bundle:
        return BundleDetector.load(args.bundle)
    from service.server import DEFAULT_BUNDLE

    return BundleDetector.load(DEFAULT_BUNDLE)


class _Stop:
    """SIGTERM/SIGINT end the loop between passes (a pass itself is safe to kill anywhere)."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)

    def _set(self, *_: object) -> None:
        self.requested = True

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.requested and time.monotonic() < end:
            time.sleep(min(1.0, end - time.monotonic()))


def _run(args: argparse.Namespace) -> int:
    from imagery.errors import AsmSpotterError
    from monitoring.store import Store, check_store_url, default_store_url, user_data_dir
    from monitoring.watch import describe_alert, run_pass, write_outputs

    url = args.store or default_store_url()
    check_store_url(url)
    stop = _Stop() if args.loop else None
    detector = _detector(args)
    failed = False
    try:
        with Store(url) as store:
            _note_created(store)
            while True:
                try:
                    result = run_pass(
                        store,
                        detector,
                        args.data_dir or user_data_dir() / "watch",
                        args.areas,
                        force=args.force,
                        deliver=not args.no_deliver,
                    )
                except AsmSpotterError as exc:
                    if not args.loop:
                        raise
                    print(f"error [{exc.reason.value}]: {exc}", file=sys.stderr, flush=True)
                else:
                    for view in result.views:
                        for alert in view.alerts:
                            print(describe_alert(alert), flush=True)
                    if args.out:
                        for path in write_outputs(store, args.out, args.areas):
                            print(f"wrote {path}")
                    print(result.summary(), flush=True)
                    for name, exc in result.errors:
                        print(f"error [{exc.reason.value}]: {name}: {exc}", file=sys.stderr)
                    failed = bool(result.errors)
                if not args.loop or stop is None:
                    break
                stop.sleep(args.interval)
                if stop.requested:
                    break
    finally:
        detector.close()
    return 2 if failed and not args.loop else 0  # a loop stopped by SIGTERM ends cleanly
