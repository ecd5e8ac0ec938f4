"""Does labelling the chips the model is least sure about teach it more than labelling random ones?

A simulation on the real Amazon Mining Watch gallery chips (``imagery.gallery``, fixed splits):
the training split is the pool whose labels are hidden until a chip is "labelled"; the test split
is the real-chip benchmark (AUROC and sensitivity at specificity 0.95 / 0.98, the metrics of
``training.chip_benchmark``), never touched otherwise.

Per seed: ``--initial`` random pool chips are labelled and a context verifier is trained on them
(``training.verifier.train_verifier``, the chip-scoring model of the default bundle). Then
``--rounds`` rounds each label ``--budget / --rounds`` more chips, picked

- by uncertainty (``labeling.active``: closeness of the mean score over the 8 flips and quarter
  turns to the threshold, plus their disagreement), or
- at random,

and the verifier is retrained from the initial model on everything labelled so far. Both
strategies share the seed, the initial chips, the initial model and the training settings; only
the picks differ. Prints the test metrics after every round, per seed and averaged, and the gain
of uncertainty over random at the full budget.

    .venv/bin/python benchmarks/bench_active_learning.py --seeds 0 1 2 --budget 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--initial", type=int, default=100, help="labelled chips to start from")
    parser.add_argument("--budget", type=int, default=200, help="chips labelled in all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool-limit", type=int, default=0, help="use a random part of the pool")
    parser.add_argument("--test-limit", type=int, default=0, help="use a random part of test")
    parser.add_argument("--test-tta", action="store_true", help="score test chips over 8 views")
    parser.add_argument("--gallery", type=Path, help="gallery folder (default ../shared/data/...)")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = parser.parse_args()

    import torch

    from imagery.gallery import load_gallery
    from imagery.stats import roc_auc, sensitivity_at_specificity
    from labeling.active import pick, uncertainty, view_scores
    from training.verifier import VerifierConfig, score_chips, train_verifier

    torch.set_num_threads(args.threads)
    t0 = time.time()
    gallery = load_gallery(args.gallery)
    pool, test = gallery.split("train"), gallery.split("test")
    rng = np.random.default_rng(12345)
    if args.pool_limit:
        pool = pool.subset(
            np.isin(
                np.arange(len(pool.labels)), rng.permutation(len(pool.labels))[: args.pool_limit]
            )
        )
    if args.test_limit:
        test = test.subset(
            np.isin(
                np.arange(len(test.labels)), rng.permutation(len(test.labels))[: args.test_limit]
            )
        )
    labels = pool.labels.astype(np.float32)
    print(
        f"gallery: pool {len(labels)} chips ({int(labels.sum())} mine), test "
        f"{len(test.labels)} ({int(test.labels.sum())} mine); loaded in {time.time() - t0:.0f} s"
    )
    per_round = args.budget // args.rounds

    def evaluate(model, cfg) -> dict[str, float]:
        s = score_chips(model, test.images, cfg, tta=args.test_tta)
        return {
            "auroc": roc_auc(s, test.labels),
            "sens@spec95": sensitivity_at_specificity(s, test.labels, 0.95),
            "sens@spec98": sensitivity_at_specificity(s, test.labels, 0.98),
        }

    results: dict[str, dict[str, list[dict]]] = {}
    for seed in args.seeds:
        cfg = VerifierConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed)
        seed_rng = np.random.default_rng(seed)
        initial = seed_rng.choice(len(labels), args.initial, replace=False)
        base, _ = train_verifier(pool.images[initial], labels[initial], cfg, log=None)
        start = {k: v.clone() for k, v in base.state_dict().items()}
        first = evaluate(base, cfg)
        results[str(seed)] = {}
        for strategy in ("uncertainty", "random"):
            chosen = np.zeros(len(labels), bool)
            chosen[initial] = True
            model, curve = base, [{"labelled": int(chosen.sum()), **first}]
            pick_rng = np.random.default_rng(seed + 1000)
            for _ in range(args.rounds):
                if strategy == "uncertainty":
                    views = view_scores(
                        lambda x, m=model, c=cfg: score_chips(m, x, c, tta=False), pool.images
                    )
                    picks = pick(uncertainty(views, args.threshold), per_round, exclude=chosen)
                else:
                    picks = pick_rng.choice(np.flatnonzero(~chosen), per_round, replace=False)
                chosen[picks] = True
                idx = np.flatnonzero(chosen)
                model, _ = train_verifier(pool.images[idx], labels[idx], cfg, init=start, log=None)
                row = {"labelled": int(chosen.sum()), "mines_picked": int(labels[picks].sum())}
                curve.append({**row, **evaluate(model, cfg)})
                print(
                    f"seed {seed} {strategy:11s} labelled {row['labelled']:4d} "
                    f"(+{per_round}, {row['mines_picked']} mines): "
                    + ", ".join(
                        f"{k} {v:.4f}" for k, v in curve[-1].items() if "@" in k or k == "auroc"
                    ),
                    flush=True,
                )
            results[str(seed)][strategy] = curve

    print(
        f"\nsame seeds {args.seeds}, {args.initial} initial chips, budget {args.budget} in "
        f"{args.rounds} rounds; test split of the gallery ({len(test.labels)} chips)"
    )
    print(
        "| strategy | "
        + " | ".join(f"AUROC @{c['labelled']}" for c in results[str(args.seeds[0])]["random"])
        + " | sens@spec95 final | sens@spec98 final |"
    )
    print("|---" * (3 + args.rounds + 1) + "|")
    for strategy in ("uncertainty", "random"):
        curves = [results[str(s)][strategy] for s in args.seeds]
        auc = np.array([[c["auroc"] for c in curve] for curve in curves])
        s95 = np.array([curve[-1]["sens@spec95"] for curve in curves])
        s98 = np.array([curve[-1]["sens@spec98"] for curve in curves])
        cells = [f"{m:.4f} ± {s:.4f}" for m, s in zip(auc.mean(0), auc.std(0), strict=True)]
        print(
            f"| {strategy} | "
            + " | ".join(cells)
            + f" | {s95.mean():.4f} ± {s95.std():.4f} | {s98.mean():.4f} ± {s98.std():.4f} |"
        )
    gains = {
        k: [
            results[str(s)]["uncertainty"][-1][k] - results[str(s)]["random"][-1][k]
            for s in args.seeds
        ]
        for k in ("auroc", "sens@spec95", "sens@spec98")
    }
    for k, v in gains.items():
        wins = sum(g > 0 for g in v)
        print(
            f"uncertainty - random at the full budget, {k}: mean {np.mean(v):+.4f} "
            f"(per seed {', '.join(f'{g:+.4f}' for g in v)}; uncertainty ahead in {wins}/{len(v)})"
        )
    print(f"total {time.time() - t0:.0f} s")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"gallery": str(args.gallery), "out": str(args.out)},
                    "results": results,
                    "gains": gains,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
