"""``asmspotter label init|import|predict|backend|export|alerts|reviews``: labelling with Label
Studio, and the review of early-warning alerts."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagery.errors import AsmSpotterError, Reason
from labeling.config import REVIEW_TITLE

TITLE_HELP = "project title (the project's identity: init is idempotent by title)"
STORE_HELP = (
    "monitoring store with the alerts (default: $ASMSPOTTER_STORE, else "
    "$XDG_DATA_HOME/asmspotter/monitor.sqlite, as `monitor` and `watch`)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    label = subparsers.add_parser(
        "label",
        help="labelling with Label Studio (projects, tasks, pre-annotations, export to COCO)",
    )
    sub = label.add_subparsers(dest="label_command", required=True, metavar="STEP")

    def common(p: argparse.ArgumentParser, files: bool = True) -> None:
        p.add_argument("--url", help="Label Studio URL (default $LABEL_STUDIO_URL)")
        p.add_argument("--token", help="API token (default $LABEL_STUDIO_API_KEY)")
        p.add_argument("--title", default="ASM pits and ponds", help=TITLE_HELP)
        if files:
            p.add_argument(
                "--files-root",
                type=Path,
                help="Label Studio's local-files document "
                "root (default $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)",
            )

    def source(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--bundle", type=Path, help="model bundle folder (runs in this process)")
        g.add_argument("--service", metavar="HOST:PORT", help="gRPC detection service")
        g.add_argument("--polygons", type=Path, help="existing polygons (GeoJSON, GPKG, SHP)")
        p.add_argument(
            "--min-score",
            type=float,
            default=None,
            help="site score threshold (default: the bundle's own default threshold)",
        )
        p.add_argument("--device", help="bundle device (cpu, cuda)")
        p.add_argument(
            "--label",
            default="pit",
            choices=["pit", "pond"],
            help="class of --polygons features without a usable label field",
        )
        p.add_argument(
            "--label-field", help="--polygons attribute holding the class (pit/pond, or mapped)"
        )
        p.add_argument(
            "--label-map",
            metavar="VALUE=CLASS,...",
            help="--label-field values to pit, pond or skip, e.g. 0=pit,1=skip,2=pond for the "
            "West Africa shapefile (see labeling/README.md)",
        )
        p.add_argument("--score", type=float, default=1.0, help="score of --polygons features")
        p.add_argument("--score-field", help="--polygons attribute holding a score")

    p = sub.add_parser("init", help="create or update the labelling project")
    common(p, files=False)
    p.set_defaults(handler=_init)

    p = sub.add_parser("import", help="cut scenes into chips and import them as tasks")
    common(p)
    p.add_argument("scenes", nargs="+", type=Path, help="stacked GeoTIFFs or Sentinel folders")
    p.add_argument(
        "--folder",
        type=Path,
        help="where chips go, inside the files root (default FILES_ROOT/<project slug>)",
    )
    p.add_argument("--chip-size", type=int, default=256)
    p.add_argument("--overlap", type=int, default=0)
    p.add_argument("--sensor", help="sensor of the scenes when their tags do not say")
    p.set_defaults(handler=_import)

    p = sub.add_parser("predict", help="add pre-annotations (scored predictions) to the tasks")
    common(p)
    source(p)
    p.set_defaults(handler=_predict)

    p = sub.add_parser("backend", help="serve a Label Studio ML backend (/health /setup /predict)")
    common(p)
    source(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--connect", action="store_true", help="also register it on the project")
    p.set_defaults(handler=_backend)

    p = sub.add_parser("export", help="validate annotations and write a COCO training dataset")
    common(p)
    p.add_argument("-o", "--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-by", choices=["region", "scene"], default="region")
    p.add_argument("--region-km", type=float, default=10.0, help="region cell size for the split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="exit 1 when anything was dropped")
    p.add_argument(
        "--reviews",
        action="store_true",
        help="export the alert review project (title default 'ASM alert review'): confirmed and "
        "corrected outlines as instance masks, rejections as hard negatives",
    )
    p.set_defaults(handler=_export, title=None)

    p = sub.add_parser("alerts", help="turn raised early-warning alerts into review tasks")
    common(p)
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--area", help="only this watched area")
    p.add_argument("--chip-size", type=int, default=64, help="smallest chip, pixels")
    p.add_argument("--folder", type=Path, help="where chips go (default FILES_ROOT/<slug>)")
    p.set_defaults(handler=_alerts, title=REVIEW_TITLE)

    p = sub.add_parser(
        "next",
        help="the unlabelled tasks to label next, by the model's uncertainty (active learning)",
        description="Scores every unlabelled task's chip with a bundle under the 8 flips and "
        "quarter turns (a chip's score: its best site's, as the service scores sites); ranks "
        "by closeness to the threshold plus disagreement between the "
        "views (labeling/active.py). --mark writes the rank into the tasks (sort by "
        "'label_next' in Label Studio's data manager).",
    )
    common(p)
    p.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    p.add_argument("--device", help="cpu, cuda (default: cuda when present)")
    p.add_argument("--budget", type=int, default=20, help="how many tasks to pick")
    p.add_argument(
        "--threshold", type=float, help="the decision threshold (default: the bundle's own)"
    )
    p.add_argument("-o", "--out", type=Path, help="write the ranking as JSON")
    p.add_argument("--mark", action="store_true", help="store uncertainty and rank in the tasks")
    p.add_argument("--reviews", action="store_true", help="rank the alert review project")
    p.set_defaults(handler=_next, title=None)

    p = sub.add_parser("reviews", help="write the alert reviews into the monitoring store")
    common(p, files=False)
    p.add_argument("--store", help=STORE_HELP)
    p.set_defaults(handler=_reviews, title=REVIEW_TITLE)


def _client(args: argparse.Namespace) -> object:
    from labeling.project import connect

    return connect(args.url, args.token)


def _init(args: argparse.Namespace) -> int:
    from labeling.project import ensure_project

    project_id, created = ensure_project(_client(args), args.title)
    print(f"{'created' if created else 'updated'} project {project_id} {args.title!r}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from imagery.scene import open_scene
    from labeling.project import document_root, require_project, slug
    from labeling.tasks import import_scene

    for scene in args.scenes:  # every scene is readable before Label Studio is touched
        with open_scene(scene, sensor=args.sensor):
            pass
    ls = _client(args)
    project_id = require_project(ls, args.title)
    root = document_root(args.files_root)
    folder = args.folder or root / slug(args.title)
    for scene in args.scenes:
        r = import_scene(
            ls, project_id, scene, root, folder, args.chip_size, args.overlap, args.sensor
        )
        print(
            f"{scene}: {r.created} tasks created, {r.already_there} already there, "
            f"{r.skipped_nodata} all-nodata chips skipped"
        )
    return 0


def _predictor(args: argparse.Namespace) -> object:
    from labeling import predict

    if args.bundle:
        return predict.BundlePredictor(args.bundle, args.device, args.min_score)
    if args.service:
        return predict.ServicePredictor(args.service, args.min_score)
    return predict.PolygonPredictor(
        args.polygons,
        args.label,
        args.score,
        args.label_field,
        args.score_field,
        predict.parse_label_map(args.label_map),
    )


def _predict(args: argparse.Namespace) -> int:
    from labeling.predict import push_predictions
    from labeling.project import document_root, require_project

    predictor = _predictor(args)  # a wrong bundle or polygon file fails before the server
    ls = _client(args)
    project_id = require_project(ls, args.title)
    done, regions = push_predictions(ls, project_id, predictor, document_root(args.files_root))
    print(f"{done} tasks given predictions ({regions} regions) from {predictor.model_version}")
    return 0


def _backend(args: argparse.Namespace) -> int:
    from imagery import feedback
    from labeling.ml_backend import MLBackend
    from labeling.project import call, document_root, require_project

    feedback.configure_server()
    predictor = _predictor(args)
    root = document_root(args.files_root)
    backend = MLBackend(predictor, root, args.host, args.port)
    if args.connect:
        ls = _client(args)
        project_id = require_project(ls, args.title)
        backend.start()
        call(
            "connect the ML backend",
            ls.ml.create,
            project=project_id,
            url=backend.url,
            title=predictor.model_version,
        )
    print(f"ML backend {predictor.model_version} on {backend.url} (Ctrl-C stops it)", flush=True)
    try:
        if args.connect:
            backend._thread.join()  # type: ignore[union-attr]
        else:
            backend.serve_forever()
    finally:
        backend.server.server_close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from labeling.export import export_dataset, fetch_tasks
    from labeling.project import document_root, require_project

    if not 0 <= args.val_fraction < 1:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, "--val-fraction must be in [0, 1)")
    ls = _client(args)
    title = args.title or (REVIEW_TITLE if args.reviews else "ASM pits and ponds")
    project_id = require_project(ls, title)
    tasks, extra = fetch_tasks(ls, project_id), None
    if args.reviews:
        from labeling.reviews import training_tasks

        tasks, extra = training_tasks(tasks)
    result = export_dataset(
        tasks,
        args.out,
        document_root(args.files_root),
        args.val_fraction,
        args.split_by,
        args.region_km,
        args.seed,
        project=title,
        image_extra=extra,
    )
    report = result.report
    print(
        f"{result.images} images ({result.splits}), {result.annotations} sites -> "
        f"{result.folder / 'annotations.json'}"
    )
    for key, count in sorted(report.counts().items()):
        print(f"  {key}: {count}")
    print(f"  report: {result.folder / 'validation_report.md'}")
    return 1 if args.strict and report.dropped() else 0


def _alerts(args: argparse.Namespace) -> int:
    from labeling.project import document_root, slug
    from labeling.reviews import push_alerts
    from monitoring.store import Store, default_store_url

    root = document_root(args.files_root)
    folder = args.folder or root / slug(args.title)
    # A store that does not exist is refused before Label Studio is asked (no empty database).
    with Store(args.store or default_store_url(), create=False) as store:
        created, there = push_alerts(
            _client(args), store, args.title, root, folder, args.area, args.chip_size
        )
    print(f"{created} review tasks created, {there} already there ({args.title!r})")
    return 0


def _reviews(args: argparse.Namespace) -> int:
    from labeling.export import fetch_tasks
    from labeling.project import require_project
    from labeling.reviews import pull_reviews
    from monitoring.store import Store, default_store_url

    with Store(args.store or default_store_url(), create=False) as store:
        ls = _client(args)
        tasks = fetch_tasks(ls, require_project(ls, args.title))
        counts = pull_reviews(store, tasks)
    print(", ".join(f"{n} {k}" for k, n in counts.items()) + f" (of {len(tasks)} tasks)")
    return 0


def _next(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from imagery.scene import open_scene
    from labeling.active import ChipScorer, rank_tasks
    from labeling.export import fetch_tasks
    from labeling.predict import chip_file
    from labeling.project import call, document_root, require_project

    with ChipScorer(str(args.bundle), args.device) as score:  # the model before the server
        threshold = score.threshold if args.threshold is None else args.threshold
        ls = _client(args)
        title = args.title or (REVIEW_TITLE if args.reviews else "ASM pits and ponds")
        project_id = require_project(ls, title)
        root = document_root(args.files_root)

        def read_chip(data: dict) -> np.ndarray:
            chip = chip_file(data, root)
            with open_scene(chip, bands=score.bands, optional_bands=score.optional_bands) as scene:
                return scene.read()

        ranked = rank_tasks(fetch_tasks(ls, project_id), read_chip, score, threshold)
    version = score.version
    picks = ranked[: args.budget]
    for rank, row in enumerate(picks, start=1):
        print(
            f"{rank:3d}. task {row['task_id']} {row['chip_id']}: uncertainty "
            f"{row['uncertainty']:.3f} (mean score {row['mean_score']:.3f}, spread "
            f"{row['spread']:.3f})"
        )
        if args.mark:
            task = call("read a task", ls.tasks.get, row["task_id"])
            data = {**task.data, "uncertainty": round(row["uncertainty"], 4), "label_next": rank}
            call("mark a task", ls.tasks.update, row["task_id"], data=data)
    if args.out:
        args.out.write_text(json.dumps({"model": version, "picks": picks}, indent=1))
    print(f"{len(picks)} of {len(ranked)} unlabelled tasks picked by {version}'s uncertainty")
    return 0
