"""Benchmark: does the detector gain from real chips? Self-training on the gallery's train split.

A recipe run's bundle is the teacher (training/pseudo_labels.py): its detector outlines the sites
of the train split's mine chips where its verifier agrees (pseudo-masks), and a sample of the
train split's non-mine chips joins as background images. The run's detector is fine-tuned on
those real chips plus its own synthetic chips, then the recipe's own stages attach the same
verifier and refit fusion and threshold on the val split. It prints the val figures of the
recipe run and of the fine-tuned detector side by side, and the synthetic val mask AP50 of
each detector. The test split is not read.

    OMP_NUM_THREADS=2 nice .venv/bin/python benchmarks/bench_detector_self_training.py \
        --base runs/recipe-2.3.0 --work runs/exp/self-training --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import train_default_bundle as recipe  # noqa: E402


def real_part(base: Path, work: Path, negatives: int, seed: int) -> tuple[Path, dict]:
    """WORK/real: the train split's mine chips with pseudo-masks and ``negatives`` non-mines."""
    from imagery.gallery import load_gallery
    from training.bundle import load_bundle
    from training.engines.base import score_floor
    from training.pseudo_labels import PseudoRule, teacher_instances, write_real_part

    out, summary = work / "real", work / "real-summary.json"
    if (out / "annotations.json").is_file():
        return out, json.loads(summary.read_text())
    train = load_gallery().split("train")
    teacher = load_bundle(recipe.output(base, "export").parent, device="cpu")
    rule = PseudoRule()
    recipe.log(f"teacher: {int(train.labels.sum())} train mine chips, rule {rule}")
    instances = teacher_instances(teacher, train, rule, score_floor(teacher.info))
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(train.labels == 0)
    background = rng.choice(pool, min(negatives, len(pool)), replace=False)
    rows = sorted(instances) + sorted(int(r) for r in background)
    write_real_part(out, train, rows, instances)
    figures = {
        "mine_chips": int(train.labels.sum()),
        "mine_chips_with_pseudo_masks": len(instances),
        "pseudo_masks": sum(len(v) for v in instances.values()),
        "background_chips": len(background),
    }
    summary.write_text(json.dumps(figures, indent=1))
    return out, figures


def fine_tune(base: Path, work: Path, data: Path, iters: int, threads: int) -> Path:
    """The base detector fine-tuned on ``data`` (same config and band statistics, lower lr)."""
    from training.bundle import read_info

    bundle = recipe.output(work, "detector").parent
    if recipe.output(work, "detector").is_file():
        return bundle
    detector = recipe.output(base, "detector").parent
    norm = read_info(detector)["normalization"]
    overrides = [
        f"init_weights={detector / 'model.pt'}",
        f"normalization={{mean: {norm['mean']}, std: {norm['std']}}}",
        f"max_iter={iters}",
        "lr=3.0e-4",
        "warmup_iters=20",
        f"steps=[{int(iters * 0.8)}]",
        f"eval_period={iters}",
    ]
    recipe.train_detector(
        recipe.DETECTOR_CONFIG, data, work / "detector", bundle, overrides, threads
    )
    return bundle


def synthetic_ap50(run: Path) -> float | None:
    """The last synthetic val mask AP50 a detector run logged."""
    path = run / "detector" / "metrics.jsonl"
    if not path.is_file():
        return None
    evals = [json.loads(line) for line in path.read_text().splitlines() if '"eval"' in line]
    return evals[-1]["eval"]["mask_AP50"] if evals else None


def main() -> None:
    from imagery.coco import merge_datasets
    from imagery.gallery import load_gallery

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=REPO / "runs" / "recipe-2.3.0")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "exp" / "self-training")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--negatives", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=recipe.SEED)
    args = ap.parse_args()
    needed = ("verifier", "detector-data", "detector", "calibrate", "export")
    missing = [n for n in needed if not recipe.output(args.base, n).is_file()]
    if missing:
        ap.error(f"--base {args.base} is not a finished recipe run: no output of {missing}")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    real, summary = real_part(args.base, work, args.negatives, args.seed)
    recipe.log(f"real chips: {json.dumps(summary)}")
    data = work / "detector-data"
    if not (data / "annotations.json").is_file():
        merge_datasets([recipe.output(args.base, "detector-data").parent, real], data)
    detector = fine_tune(args.base, work, data, args.iters, args.threads)
    # the same verifier: the recipe's attach and calibrate stages read it from the work folder
    for source in (recipe.output(args.base, "verifier"), args.base / "verifier-history.json"):
        if not (work / source.name).exists():
            os.link(source, work / source.name)
    gallery = load_gallery()
    verified = recipe.stage_attach(work, detector)
    new = recipe.stage_calibrate(work, gallery, verified)
    old = json.loads(recipe.output(args.base, "calibrate").read_text())
    rows = [
        ("val AUROC, detector alone", "val_auroc_detector"),
        ("val AUROC, verifier alone", "val_auroc_verifier"),
        ("val AUROC, fused", "val_auroc_fused"),
        ("val sensitivity at spec 0.98, fused", "val_sensitivity_at_spec98_fused"),
        ("val mines with a site", "val_mines_with_a_site"),
        ("val non-mines with a site", "val_negatives_with_a_site"),
        ("default threshold", "threshold"),
    ]
    print(f"{'figure':40s} {'base':>10s} {'self-trained':>13s}")
    for label, key in rows:
        print(f"{label:40s} {old[key]:10.4f} {new[key]:13.4f}")
    before, after = synthetic_ap50(args.base), synthetic_ap50(work)
    shown = ["n/a" if v is None else f"{v:.4f}" for v in (before, after)]
    print(f"{'synthetic val mask AP50, detector':40s} {shown[0]:>10s} {shown[1]:>13s}")
    print(f"fusion: base {old['fusion']}, self-trained {new['fusion']}")


if __name__ == "__main__":
    main()
