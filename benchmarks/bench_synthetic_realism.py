"""Benchmark: how close the generator's chips are to real Sentinel-2 chips of Amazon mining.

Real: the Amazon Mining Watch gallery's TRAIN split (``imagery.gallery``; never val or test),
mine chips (label 1) and non-mine chips (label 0), 48 px, TOA reflectance B02 B03 B04.
Generated: ``imagery.synthetic.chips.context_chips`` (48 px chips centred on a generated mining
site, and site-free chips centred on forest or a look-alike), for each generator setting asked.
For positives and negatives separately it prints the per-band 1-D Wasserstein distance of the
pixel values, the Fréchet distance of per-chip colour/texture features and the cross-validated
AUROC of a seeded domain classifier (0.5 = indistinguishable); see
``imagery.synthetic.realism``.

    .venv/bin/python benchmarks/bench_synthetic_realism.py [--n 1000] [--settings legacy l1c]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from imagery.gallery import load_gallery
    from imagery.synthetic.chips import SETTINGS, context_chips
    from imagery.synthetic.realism import compare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="generated chips per label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=list(SETTINGS),
        help="generator settings to measure (imagery.synthetic.chips.SETTINGS)",
    )
    parser.add_argument("--gallery", type=Path, help="gallery folder (default ../shared/data/...)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    train = load_gallery(args.gallery).split("train")
    real = {
        "positives": train.images[train.labels == 1],
        "negatives": train.images[train.labels == 0],
    }
    rows = []
    for name in args.settings:
        start = time.perf_counter()
        images, labels, _ = context_chips(2 * args.n, args.seed, **SETTINGS[name])
        seconds = time.perf_counter() - start
        for side, label in (("positives", 1), ("negatives", 0)):
            r = compare(real[side], images[labels == label], seed=args.seed)
            rows.append(
                {"setting": name, "side": side, "seconds": round(seconds, 1), **r.to_dict()}
            )
    first = {r["side"]: r for r in rows[:2]}
    print(
        f"real: gallery train split, {first['positives']['n_real']} mine / "
        f"{first['negatives']['n_real']} non-mine chips (>= 90 % valid pixels); generated: "
        f"{args.n} per label, seed {args.seed}"
    )
    print(
        f"{'setting':<12}{'side':<10}{'W1 B02':>7}{'W1 B03':>7}{'W1 B04':>7}{'Frechet':>8}"
        f"{'AUROC':>7}{'kNN':>6}{'other':>6}  median B02/B03/B04"
    )
    for side in ("positives", "negatives"):
        r = first[side]
        med = "/".join(f"{v:.3f}" for v in r["real_median"])
        print(f"{'(real)':<12}{side:<10}{'':>44}{r['real_other_share']:>6.2f}  {med}")
    for r in rows:
        w = r["wasserstein"]
        med = "/".join(f"{v:.3f}" for v in r["generated_median"])
        print(
            f"{r['setting']:<12}{r['side']:<10}{w[0]:>7.4f}{w[1]:>7.4f}{w[2]:>7.4f}"
            f"{r['frechet']:>8.2f}{r['auroc_logistic']:>7.3f}{r['auroc_knn']:>6.3f}"
            f"{r['generated_other_share']:>6.2f}  {med}"
        )
    print(
        "W1: 1-D Wasserstein of pixel TOA reflectance per band; Frechet: of per-chip features; "
        "AUROC: domain classifier (logistic; kNN), 5-fold CV, 0.5 = indistinguishable; other: "
        "median share of non-forest pixels"
    )
    print(
        "generation time (s for 2n chips, not a speed figure): "
        + ", ".join(f"{r['setting']} {r['seconds']}" for r in rows[::2])
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
