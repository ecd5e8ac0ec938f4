"""Benchmark: both engines on the same generated data, in one run.

For each engine (torchvision, detectron2) it trains ``--iters`` steps from random init on a
synthetic COCO set (``imagery.synthetic.generate_dataset``, train/val split by scene), exports the
bundle, and reports:
  * training images/s (``iters x batch / wall time of Engine.train``, start-up included),
  * inference chips/s (``DetectionModel.predict`` on the val chips, after one warm-up batch),
  * COCO mask/box AP and AP50 and object F1 on the held-out scenes (``training.evaluate``).
An engine that cannot be imported (e.g. Detectron2 not installed) is reported, not fatal.

    .venv/bin/python benchmarks/bench_training.py                      # CPU, short
    .venv/bin/python benchmarks/bench_training.py --device cuda --iters 1000 --scenes 40 \\
        --scene-size 1024 --chip-size 256 --batch-size 16              # on a GPU
Extra ``key=value`` arguments override the training config of both engines. ``--min-ap50 X``
exits 1 when an engine's mask AP50 stays below X (the issue's CPU check uses 0.5).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imagery.errors import AsmSpotterError  # noqa: E402
from imagery.synthetic.output import generate_dataset  # noqa: E402
from training.bundle import export_bundle, load_bundle  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import load_train_data  # noqa: E402
from training.engines import get_engine  # noqa: E402
from training.evaluate import evaluate_model  # noqa: E402

# Small, CPU-friendly settings shared by both engines unless overridden.
CPU_OVERRIDES = [
    "backbone=resnet18",
    "fpn_channels=64",
    "box_head_dim=256",
    "optimizer=adamw",
    "lr=1e-3",
    "weight_decay=0.05",
    "warmup_iters=20",
    "num_workers=2",
    "eval_period=0",
    "log_period=10",
    "rpn_post_nms_topk_train=500",
    "roi_batch_size_per_image=128",
]


def bench_engine(name: str, args: argparse.Namespace, data_dir: Path, work: Path) -> dict:
    overrides = [*CPU_OVERRIDES] if args.device == "cpu" else []
    overrides += [
        f"engine={name}",
        f"device={args.device}",
        f"chip_size={args.chip_size}",
        f"batch_size={args.batch_size}",
        f"max_iter={args.iters}",
        f"steps=[{int(args.iters * 0.85)}]",
        f"checkpoint_period={args.iters}",
        f"seed={args.seed}",
        *args.overrides,
    ]
    cfg = load_config(args.config, overrides)
    data = load_train_data(cfg, data_dir)
    val = data.val
    data.val = None  # time training alone; evaluation follows on the exported bundle
    try:
        engine = get_engine(name)
    except AsmSpotterError as exc:
        return {"engine": name, "error": str(exc)}
    out = work / f"run-{name}"
    start = time.perf_counter()
    best = engine.train(cfg, data, out, resume=False)
    train_s = time.perf_counter() - start
    bundle = export_bundle(best, work / f"bundle-{name}", command="bench_training.py")
    model = load_bundle(bundle, device=None if args.device == "auto" else args.device)
    chips = np.stack([val.read_image(i) for i in range(len(val))])
    bs = args.batch_size
    model.predict(chips[:bs])  # warm-up
    _sync(model.device)
    start = time.perf_counter()
    for i in range(0, len(chips), bs):
        model.predict(chips[i : i + bs])
    _sync(model.device)
    infer_s = time.perf_counter() - start
    metrics = evaluate_model(model, val, batch_size=bs)
    return {
        "engine": name,
        "device": model.device,
        "train_images_per_s": args.iters * cfg.batch_size / train_s,
        "train_seconds": train_s,
        "infer_chips_per_s": len(chips) / infer_s,
        "mask_AP": metrics["mask_AP"],
        "mask_AP50": metrics["mask_AP50"],
        "bbox_AP": metrics["bbox_AP"],
        "bbox_AP50": metrics["bbox_AP50"],
        "f1": metrics["f1"],
        "val_chips": len(val),
        "val_instances": metrics["n_instances"],
        "train_chips": len(data.train),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="torchvision,detectron2")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--config", type=Path, help="base config (defaults when omitted)")
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--scene-size", type=int, default=512)
    parser.add_argument("--chip-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, help="use this COCO folder instead of generating")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--min-ap50", type=float, help="exit 1 if an engine's mask AP50 is lower")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_training_"))
    data_dir = args.data
    if data_dir is None:
        data_dir = work / "data"
        if not (data_dir / "annotations.json").is_file():
            generate_dataset(
                data_dir, args.scenes, args.scene_size, args.chip_size, seed=7, val_fraction=0.25
            )
    results = []
    for name in args.engines.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        results.append(bench_engine(name, args, data_dir, work))
    print(f"data: {data_dir}  iters: {args.iters}  batch: {args.batch_size}  device: {args.device}")
    head = f"{'engine':12} {'train img/s':>11} {'infer chip/s':>12} {'maskAP':>7} {'AP50':>6}"
    print(head + f" {'boxAP':>6} {'F1':>5}")
    for r in results:
        if "error" in r:
            print(f"{r['engine']:12} unavailable: {r['error']}")
            continue
        print(
            f"{r['engine']:12} {r['train_images_per_s']:11.2f} {r['infer_chips_per_s']:12.2f} "
            f"{r['mask_AP']:7.3f} {r['mask_AP50']:6.3f} {r['bbox_AP']:6.3f} {r['f1']:5.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.min_ap50 is not None:
        low = [r["engine"] for r in results if "error" not in r and r["mask_AP50"] < args.min_ap50]
        if low:
            print(f"mask AP50 below {args.min_ap50}: {low}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
