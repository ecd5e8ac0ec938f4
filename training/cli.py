"""``asmspotter train | evaluate | export``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from imagery.errors import AsmSpotterError, Reason


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a Mask R-CNN on a COCO chip dataset",
        description="Train with a config file plus key=value overrides, e.g. "
        "`asmspotter train --config training/configs/default.yaml --data data/syn "
        "--out runs/default max_iter=500`. Uses CUDA when present (the torchvision engine with "
        "AMP), else the CPU.",
    )
    p.add_argument("--config", type=Path, help="YAML/JSON config (defaults when omitted)")
    p.add_argument("--data", type=Path, help="dataset folder: DIR/{train,val}/ or split field")
    p.add_argument(
        "-o", "--out", type=Path, required=True, help="run folder for checkpoints and logs"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--export", type=Path, metavar="BUNDLE_DIR", help="export the best model")
    p.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="> 1: data-parallel on N GPUs (torchvision: through torchrun; detectron2: its own "
        "launch)",
    )
    p.add_argument(
        "--init-bundle",
        type=Path,
        metavar="BUNDLE_DIR",
        help="fine-tune this bundle (e.g. service/default_bundle on reviewed alerts): its config, "
        "weights and normalisation are the start; --config and key=value change them",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser(
        "promote",
        help="replace the live bundle by a fine-tuned one if the real-chip benchmark says so",
        description="Scores both bundles on the real gallery chips (test split; "
        "training/chip_benchmark.py) and replaces TARGET by CANDIDATE only when CANDIDATE's "
        "metric is higher by more than --min-gain and its sensitivity at specificity 0.98 "
        "does not fall by more than --max-drop (training/promote.py).",
    )
    p.add_argument("candidate", type=Path, help="the new bundle (e.g. from train --init-bundle)")
    p.add_argument("--target", type=Path, required=True, help="the live bundle folder")
    p.add_argument("--metric", default="auroc", help="the deciding figure (default auroc)")
    p.add_argument("--min-gain", type=float, default=0.0)
    p.add_argument("--max-drop", type=float, default=0.02)
    p.add_argument("--split", default="test", choices=["test", "val"], help="gallery split")
    p.add_argument("--limit", type=int, default=0, help="a fixed random part of the split")
    p.add_argument("--gallery", type=Path, help="gallery folder (default ../shared/data/...)")
    p.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    p.set_defaults(handler=_promote)

    p = subparsers.add_parser("evaluate", help="COCO AP and object-level F1 of a bundle")
    p.add_argument("bundle", type=Path, help="bundle folder (holding bundle.json)")
    p.add_argument("coco", type=Path, help="COCO annotations.json (or its folder)")
    p.add_argument("-o", "--out", type=Path, help="also write the full metrics JSON here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON, not a table")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when present)")
    p.add_argument(
        "--score-threshold",
        type=float,
        help="lowest score kept for AP (default: all the bundle's network reports)",
    )
    p.add_argument(
        "--f1-score-threshold",
        type=float,
        help="score a site needs to count in F1 (default: the bundle's default threshold)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser("export", help="write a versioned model bundle from a checkpoint")
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by `asmspotter train`")
    p.add_argument("-o", "--out", type=Path, required=True, help="bundle folder, e.g. NAME-VERSION")
    p.add_argument("--name")
    p.add_argument("--version")
    p.add_argument("--sensor")
    p.add_argument("--full-precision", action="store_true", help="keep fp32 weights")
    p.add_argument(
        "--eval",
        type=Path,
        action="append",
        default=[],
        metavar="COCO",
        help="evaluate the bundle on this COCO set and store the metrics (repeatable;"
        " the first is the headline)",
    )
    p.add_argument("--limits", help="text for the model card's Limits section")
    p.set_defaults(handler=_export)


def _train(args: argparse.Namespace) -> int:
    from training.bundle import RUN_INFO, carry_extras, export_bundle
    from training.config import load_config
    from training.data import load_train_data
    from training.engines import get_engine

    base, init = (None, None)
    if args.init_bundle:
        base, init = bundle_start(args.init_bundle)
    cfg = load_config(args.config, args.overrides, base=base)
    engine = get_engine(cfg.engine)
    engine.check_config(cfg)
    # One launcher per engine: torchrun for the torchvision loop, Detectron2's own `launch`.
    if args.num_gpus > 1 and not engine.launches_itself:
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return _launch_torchrun(args.num_gpus)
    out = args.out
    rank = int(os.environ.get("RANK", "0"))
    data = load_train_data(cfg, args.data)
    out.mkdir(parents=True, exist_ok=True)
    command = _train_command(args)
    if rank == 0:
        run = {
            "command": command,
            "sources": data.sources,
            "n_train": len(data.train),
            "n_val": len(data.val) if data.val is not None else 0,
            "stats": {"mean": data.stats.mean, "std": data.stats.std},
            "init_bundle": init,
        }
        (out / RUN_INFO).write_text(json.dumps(run, indent=2))
    best = engine.train(cfg, data, out, args.resume, num_gpus=args.num_gpus)
    if rank != 0:
        return 0
    print(f"best checkpoint: {best}")
    print(metrics_line(checkpoint_metrics(best)))
    if args.export:
        bundle = export_bundle(best, args.export, command=command)
        if args.init_bundle:
            carry_extras(args.init_bundle, bundle)
        print(f"bundle: {bundle}")
    return 0


def bundle_start(bundle_dir: Path) -> tuple[dict, dict]:
    """A bundle's training config with its weights and normalisation as the start of a new run,
    and what to record about it."""
    import dataclasses

    from training.bundle import read_info
    from training.config import TrainConfig

    info = read_info(bundle_dir)
    weights = Path(bundle_dir) / info["weights"]
    if not weights.is_file():
        raise AsmSpotterError(Reason.BUNDLE_INVALID, "weights file is missing", str(weights))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in info["config"].items() if k in names}
    base.update(
        init_weights=str(weights.resolve()),
        normalization=dict(info["normalization"]),
        train_data=None,
        val_data=None,
    )
    record = {
        "path": str(Path(bundle_dir).resolve()),
        "name": info.get("name"),
        "version": info.get("version"),
        "weights_sha256": info.get("weights_sha256"),
    }
    return base, record


SUMMARY_KEYS = ("mask_AP", "mask_AP50", "bbox_AP", "bbox_AP50", "f1")


def checkpoint_metrics(path: Path) -> dict:
    """The validation metrics a checkpoint was saved with ({} when there was no validation)."""
    import torch

    head = torch.load(path, map_location="cpu", weights_only=False)
    return (head.get("metrics") if isinstance(head, dict) else None) or {}


def metrics_line(metrics: dict) -> str:
    if not metrics:
        return "validation: none (the dataset has no val split; the last weights are kept)"
    parts = [f"{k} {metrics[k]:.3f}" for k in SUMMARY_KEYS if isinstance(metrics.get(k), float)]
    n = metrics.get("n_images")
    return "validation" + (f" ({n} images)" if n else "") + ": " + ", ".join(parts)


def metrics_table(metrics: dict) -> str:
    """A readable table: the COCO summary, then precision/recall/F1 per class."""
    rows = [f"{'metric':<12}{'value':>8}"]
    rows += [f"{k:<12}{metrics[k]:>8.3f}" for k in SUMMARY_KEYS if k in metrics]
    objects = metrics.get("objects", {})
    per_class = objects.get("per_class", {})
    if per_class:
        iou, score = objects.get("iou_threshold"), objects.get("score_threshold")
        rows += ["", f"objects (IoU >= {iou}, score >= {score}):"]
        rows.append(f"{'class':<10}{'tp':>6}{'fp':>6}{'fn':>6}{'precision':>11}{'recall':>8}"
                    f"{'F1':>7}")  # fmt: skip
        for cls, m in {**per_class, "all": objects.get("all", {})}.items():
            if m:
                rows.append(
                    f"{cls:<10}{m['tp']:>6}{m['fp']:>6}{m['fn']:>6}{m['precision']:>11.3f}"
                    f"{m['recall']:>8.3f}{m['f1']:>7.3f}"
                )
    rows.append(f"\n{metrics.get('n_images', '?')} images")
    return "\n".join(rows)


def _train_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (for the bundle and its card)."""
    parts = ["asmspotter", "train"]
    flags = (
        ("--config", args.config),
        ("--init-bundle", args.init_bundle),
        ("--data", args.data),
        ("--out", args.out),
    )
    for flag, value in flags:
        if value is not None:
            parts += [flag, str(value)]
    if args.num_gpus > 1:
        parts += ["--num-gpus", str(args.num_gpus)]
    return shlex.join([*parts, *args.overrides])


def _launch_torchrun(n: int) -> int:
    """Re-run this very command under torchrun with ``n`` processes (one per GPU)."""
    argv = [a for a in sys.argv[1:]]
    for i, a in enumerate(argv):  # drop --num-gpus N / --num-gpus=N
        if a == "--num-gpus":
            del argv[i : i + 2]
            break
        if a.startswith("--num-gpus="):
            del argv[i]
            break
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}"]
    cmd += ["-m", "asmspotter.cli", *argv]
    print("launching:", shlex.join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def _promote(args: argparse.Namespace) -> int:

    from imagery.gallery import load_gallery
    from training.bundle import read_info

    for bundle in (args.candidate, args.target):  # both bundles exist before any work
        read_info(bundle)
    from training.promote import promote

    chips = load_gallery(args.gallery).split(args.split).sample(args.limit)
    decision = promote(
        args.candidate,
        args.target,
        chips,
        metric=args.metric,
        min_gain=args.min_gain,
        max_drop=args.max_drop,
        dry_run=args.dry_run,
    )
    verb = "would replace" if args.dry_run else "replaced"
    if decision.promote:
        print(f"{verb} {args.target} by {args.candidate}: {decision.reason}")
        if decision.previous:
            print(f"previous bundle kept at {decision.previous}")
    else:
        print(f"kept {args.target}: {decision.reason}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.bundle import load_bundle
    from training.evaluate import evaluate_to_file

    model = load_bundle(args.bundle, args.device)
    metrics = evaluate_to_file(
        model,
        args.coco,
        args.out,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        f1_score_threshold=args.f1_score_threshold,
    )
    if args.json:
        summary = {k: metrics[k] for k in SUMMARY_KEYS}
        print(json.dumps({**summary, "n_images": metrics["n_images"]}))
    else:
        print(metrics_table(metrics))
        if args.out:
            print(f"metrics JSON: {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.bundle import export_bundle, load_bundle, update_metrics
    from training.evaluate import evaluate_to_file

    for coco in args.eval:
        if not coco.exists():
            raise AsmSpotterError(Reason.FILE_NOT_FOUND, "no such COCO set", str(coco))
    bundle = export_bundle(
        args.checkpoint,
        args.out,
        name=args.name,
        version=args.version,
        sensor=args.sensor,
        half=not args.full_precision,
        limits=args.limits,
    )
    if args.eval:
        model = load_bundle(bundle)
        metrics = evaluate_to_file(model, args.eval[0])
        for coco in args.eval[1:]:
            metrics[f"eval:{coco}"] = evaluate_to_file(model, coco)
        update_metrics(bundle, metrics, args.limits)
    print(f"bundle: {bundle}")
    return 0


if __name__ == "__main__":  # torchrun entry: python -m training.cli train ...
    from asmspotter.cli import main

    sys.exit(main())
