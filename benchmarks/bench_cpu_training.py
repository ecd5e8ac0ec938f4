"""The short CPU training of issue 6, end to end with the project's own commands.

    python benchmarks/bench_cpu_training.py [--work DIR] [--min-ap50 0.5] [key=value ...]

1. ``asmspotter generate dataset``: 160 generated 512 px scenes cut into 128 px chips (seed
   2027, train/val split by scene) and, apart, 24 held-out scenes (seed 777) the model never sees.
2. ``asmspotter train --config training/configs/cpu.yaml`` (torchvision engine, ResNet-18-FPN,
   3000 iterations of 4 chips; extra ``key=value`` arguments override the config) and export.
3. ``asmspotter evaluate`` on the held-out scenes: COCO mask/box AP and AP50, object F1.

Prints one JSON document (seconds per stage, validation and held-out metrics) and exits 1 when
the held-out mask AP50 is below ``--min-ap50``. About 40 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "asmspotter.cli"]
DATA = ["--scene-size", "512", "--chip-size", "128", "--clusters", "3", "--keep-negatives", "0.35"]


def run(args: list[str]) -> tuple[float, str]:
    """Runs one CLI command in the repository; returns its seconds and stdout."""
    t0 = time.perf_counter()
    done = subprocess.run([*CLI, *args], cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    return time.perf_counter() - t0, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/asmspotter-cpu-training"))
    ap.add_argument("--scenes", type=int, default=160, help="training + validation scenes")
    ap.add_argument("--heldout-scenes", type=int, default=24)
    ap.add_argument("--min-ap50", type=float, default=0.5, help="held-out mask AP50 to reach")
    ap.add_argument("overrides", nargs="*", help="training config key=value overrides")
    args = ap.parse_args()
    work = args.work
    data, heldout, run_dir, bundle = (work / n for n in ("data", "heldout", "run", "bundle"))
    report: dict = {"config": "training/configs/cpu.yaml", "overrides": args.overrides}

    seconds, _ = run(
        ["generate", "dataset", "-o", str(data), "-n", str(args.scenes), "--seed", "2027"]
        + [*DATA, "--quiet"]
    )
    report["generate_s"] = round(seconds, 1)
    # The held-out scenes: another seed, no validation split.
    run(
        ["generate", "dataset", "-o", str(heldout), "-n", str(args.heldout_scenes), "--seed", "777"]
        + [*DATA, "--val-fraction", "0", "--quiet"]
    )
    seconds, _ = run(
        ["train", "--config", "training/configs/cpu.yaml", "--data", str(data)]
        + ["--out", str(run_dir), "--export", str(bundle), *args.overrides]
    )
    report["train_s"] = round(seconds, 1)
    info = json.loads((bundle / "bundle.json").read_text())
    metrics = info.get("metrics", {})
    report["validation"] = {k: metrics.get(k) for k in ("mask_AP", "mask_AP50", "bbox_AP50", "f1")}
    seconds, out = run(["evaluate", str(bundle), str(heldout / "annotations.json"), "--json"])
    report["evaluate_s"] = round(seconds, 1)
    report["heldout"] = json.loads(out.strip().splitlines()[-1])
    report["min_ap50"] = args.min_ap50
    report["passed"] = report["heldout"]["mask_AP50"] >= args.min_ap50
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
