"""``asmspotter fetch`` and ``monitor run|report`` (``watch``: ``monitoring.watch_cli``).
Heavy imports happen in handlers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imagery import feedback
from imagery.cli import band_order_arg
from monitoring import watch_cli

STORE_HELP = (
    "sqlite:///PATH or postgresql://user@host:port/db (default: $ASMSPOTTER_STORE, else "
    "$XDG_DATA_HOME/asmspotter/monitor.sqlite, i.e. ~/.local/share/asmspotter/monitor.sqlite)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fetch",
        help="median cloud-free composite of an area and dates from STAC (an API or static)",
        description="Find Sentinel-2 L2A items over AREA in a STAC API or in static STAC (a "
        "catalog, collection, item collection, item files; local or on a web server), mask "
        "clouds and shadows with SCL, and write the per-pixel median of the model's bands as a "
        "COG tile clipped to the area.",
    )
    p.add_argument("area", help="area polygon(s): GeoJSON, GeoPackage or Shapefile, any CRS")
    p.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last date, YYYY-MM-DD (included)")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output .tif")
    p.add_argument(
        "--preset", choices=["earth-search", "planetary-computer"], default="earth-search",
        help="a public STAC API (default: earth-search), unless --stac is given",
    )  # fmt: skip
    p.add_argument(
        "--stac",
        "--stac-url",
        dest="stac",
        metavar="SOURCE",
        help="a STAC API URL, or static STAC: a catalog.json/collection.json (path or URL), an "
        "item collection, an item file, a folder or glob of item files (overrides --preset)",
    )
    p.add_argument(
        "--collection",
        help="collection id (API default: the preset's Sentinel-2 L2A; static STAC: only "
        "filtered when given)",
    )
    p.add_argument("--max-cloud", type=float, default=60.0, help="max scene cloud cover, %%")
    p.add_argument("--resolution", type=float, default=10.0, help="output pixel size, metres")
    p.add_argument("--bands", nargs="+", help="bands (default: the model's stack)")
    p.set_defaults(handler=_fetch)

    monitor = subparsers.add_parser("monitor", help="track sites of an area over time")
    sub = monitor.add_subparsers(dest="monitor_command", required=True, metavar="ACTION")
    r = sub.add_parser("run", help="record one date's detections and track them")
    r.add_argument("--store", help=STORE_HELP)
    r.add_argument("--area", required=True, help="name of the monitored area")
    r.add_argument("--date", help="acquisition date (default: the tile's datetime tag)")
    r.add_argument("--scene-id", help="scene id (default: the tile's or the file's name)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--detections", help="detections file (GeoJSON, GeoPackage, Shapefile)")
    src.add_argument("--bundle", help="model bundle folder to run over --tile (needs torch)")
    src.add_argument("--server", help="detection service HOST:PORT to send --tile to")
    r.add_argument("--tile", help="the scene tile (base image for reports and chips)")
    band_order_arg(r)
    r.add_argument(
        "--model-version",
        help="with --detections, when the file does not say: NAME-VERSION of the model",
    )
    r.add_argument(
        "--weights-sha256",
        help="with --detections, when the file does not say: the weights' SHA-256 ('none' for "
        "hand-drawn polygons)",
    )
    r.add_argument("--concessions", help="concession polygons (any vector format and CRS)")
    r.add_argument("--protected", help="protected-area polygons")
    r.add_argument("--grow-fraction", type=float, default=0.2, help="area rise that is 'grown'")
    r.add_argument("--min-overlap", type=float, default=0.1, help="overlap that matches a site")
    r.add_argument("--tolerance-m", type=float, default=0.0, help="match sites this close")
    r.set_defaults(handler=_run)

    rep = sub.add_parser("report", help="map, alerts, evidence and mined-area plot of an area")
    rep.add_argument("--store", help=STORE_HELP)
    rep.add_argument("--area", required=True)
    rep.add_argument("-o", "--out", "--output", dest="output", required=True, help="report folder")
    rep.add_argument("--concessions")
    rep.add_argument("--protected")
    rep.set_defaults(handler=_report)

    watch_cli.register(subparsers)


def _fetch(args: argparse.Namespace) -> int:
    from imagery.errors import AsmSpotterError, Reason
    from imagery.sensors import SENTINEL2_L2A
    from monitoring.fetch import PRESETS, composite

    url, collection = PRESETS[args.preset]
    modifier = None
    if args.preset == "planetary-computer" and not args.stac:
        try:
            import planetary_computer

            modifier = planetary_computer.sign_inplace
        except ImportError:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                "the planetary-computer preset needs `pip install planetary-computer`",
            ) from None
    stats = composite(
        args.area,
        args.start,
        args.end,
        args.output,
        stac_url=args.stac or url,
        collection=args.collection or (None if args.stac else collection),
        bands=args.bands or SENTINEL2_L2A.default_stack,
        max_cloud=args.max_cloud,
        resolution=args.resolution,
        progress=not args.quiet,
        modifier=modifier,
    )
    print(
        f"wrote {args.output}: {stats['width']}x{stats['height']} px ({stats['crs']}), "
        f"median of {len(stats['items'])} scene(s) on {', '.join(stats['dates'])}, "
        f"{stats['valid_fraction']:.1%} of the area cloud-free"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from imagery.errors import AsmSpotterError, Reason
    from imagery.scene import open_scene
    from imagery.vector import read_features
    from monitoring import detect
    from monitoring.monitor import iso_date, record_run
    from monitoring.store import Store, check_store_url, default_store_url, store_label

    # Everything the user typed is checked before a model runs or a server is asked.
    url = args.store or default_store_url()
    check_store_url(url)
    date = iso_date(args.date) if args.date else None
    if (args.bundle or args.server) and not args.tile:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, "--bundle and --server need --tile")
    concessions = read_features(args.concessions) if args.concessions else None
    protected = read_features(args.protected) if args.protected else None
    tile_id = tile_date = None
    if args.tile:
        with open_scene(args.tile, band_order=args.band_order) as scene:
            tile_id, tile_date = scene.scene_id, scene.datetime
    date = date or (iso_date(tile_date) if tile_date else None)
    if not date:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, "give --date (the tile has no datetime)")
    if args.detections:
        features, meta = detect.from_file(args.detections, args.model_version, args.weights_sha256)
    elif args.model_version or args.weights_sha256:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            "--model-version/--weights-sha256 describe a --detections file; with --bundle or "
            "--server the model says who it is",
        )
    elif args.bundle:
        features, meta = detect.from_bundle(args.tile, args.bundle, args.band_order)
    else:
        features, meta = detect.from_server(args.tile, args.server, args.band_order)
    scene_id = args.scene_id or tile_id or Path(args.detections or args.tile).stem
    with Store(url) as store:
        if store.created:
            feedback.notice(f"created a new monitoring store: {store_label(url)}")
        summary = record_run(
            store,
            args.area,
            scene_id,
            date,
            features,
            tile=str(Path(args.tile).resolve()) if args.tile else None,
            concessions=concessions,
            protected=protected,
            grow_fraction=args.grow_fraction,
            min_overlap=args.min_overlap,
            tolerance_m=args.tolerance_m,
            **meta,
        )
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items() if v)
    print(
        f"{'re-recorded' if summary.rerun else 'recorded'} run {summary.run_id} "
        f"({args.area}, {summary.date}, {scene_id}, {meta['model_version']}): "
        f"{counts or 'no sites'}; mined area {summary.mined_area_m2 / 1e4:.1f} ha; "
        f"{summary.alerts} alert(s); store: {store_label(url)}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from imagery.vector import read_features
    from monitoring.reporting import build_report
    from monitoring.store import Store, default_store_url

    conc = read_features(args.concessions) if args.concessions else None
    prot = read_features(args.protected) if args.protected else None
    with Store(args.store or default_store_url(), create=False) as store:
        paths = build_report(store, args.area, args.output, conc, prot)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
    print(f"map: {paths['map']}")
    return 0
