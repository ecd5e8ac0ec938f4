"""Benchmark: variants of the default recipe's context verifier, judged on the real val split.

Each variant trains the verifier of ``benchmarks/train_default_bundle.py`` (same config, seed and
class weights) with one change, then prints the val split's AUROC and sensitivity at
specificity 0.98 (8-view test-time averaging, as a bundle scores), the mean probability it gives
the val riverbanks, and, on held-out synthetic context chips of each generator look, AUROC and the
mean probability of the synthetic mines (what decides whether the bundle keeps synthetic sites).
The test split is not read: it stays for ``benchmarks/bench_real_chips.py``.

On a machine without the gallery or GDAL (a lent GPU machine), ``--export-chips FILE`` here writes
the train and val chips as they render (uint8, a few tens of MB) and ``--chips FILE`` there reads
them back bit for bit; ``--device cuda`` trains there (augmentations on the GPU). The synthetic
figures need the generator (GDAL): ``--chips`` leaves them out.

Variants:
  recipe     the recipe's verifier as it is (``--epochs``, ``--seed`` and ``--set KEY=VALUE``
             override the recipe's);
             ``--verifier RUN/verifier.pt`` scores a recipe run's verifier without training,
             several ``--verifier`` files score their ensemble (the mean of their 8-view logits)
  synthetic  the real train chips plus 3000 synthetic context chips (half mines, half
             look-alikes: rivers, sandbars, oxbows, ponds, clearings, roads, villages, clouds,
             forest) in the calibrated Amazon look (L1C, L2A) and the legacy look, each domain's
             classes balanced and the synthetic chips weighted ``--synthetic-weight``

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verifier_variants.py synthetic --epochs 48
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verifier_variants.py recipe --epochs 72
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verifier_variants.py recipe \
        --set batch_size=64 --out runs/exp/v144-b64
    .venv/bin/python benchmarks/bench_verifier_variants.py recipe \
        --verifier runs/default-recipe/verifier.pt
    .venv/bin/python benchmarks/bench_verifier_variants.py recipe \
        --verifier runs/exp/v144/verifier.pt runs/exp/v144-seed43/verifier.pt
    .venv/bin/python benchmarks/bench_verifier_variants.py --export-chips .gpu/chips.npz
    python3 benchmarks/bench_verifier_variants.py recipe --chips .gpu/chips.npz --device cuda \
        --epochs 432 --out runs/exp/gpu-v432
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (chips, generator options): training chips for the "synthetic" variant
SYNTHETIC_MIX = (
    (1600, {"level": "l1c", "palette": "amazon"}),
    (700, {"level": "l2a", "palette": "amazon"}),
    (700, {"level": "l2a", "palette": "legacy"}),
)
TRAIN_SEED, HELD_OUT_SEED, HELD_OUT_CHIPS = 100, 900, 200


def synthetic_chips(seed: int, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (images, labels) part per look of SYNTHETIC_MIX, half mines; seeds ``seed + k``."""
    from imagery.synthetic.chips import context_chips

    parts = []
    for k, ((_, options), n) in enumerate(zip(SYNTHETIC_MIX, sizes, strict=True)):
        images, labels, _ = context_chips(n, seed=seed + k, positive_fraction=0.5, **options)
        parts.append((images, labels))
    return parts


def export_chips(path: Path, splits: tuple[str, ...] = ("train", "val")) -> None:
    """The gallery's chips of ``splits`` as the mosaics render them (uint8 R,G,B, black =
    nodata), their labels and categories; ``read_chips`` gives back the same reflectance."""
    from imagery.gallery import load_gallery, to_reflectance, to_rendered

    gallery = load_gallery()
    parts = {}
    for name in splits:
        chips = gallery.split(name)
        rgb = to_rendered(chips.images)
        if not np.array_equal(to_reflectance(rgb), chips.images, equal_nan=True):
            raise SystemExit(f"the {name} chips do not round-trip through uint8")
        parts |= {f"{name}_rgb": rgb, f"{name}_labels": chips.labels}
        parts[f"{name}_categories"] = chips.categories.astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **parts)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


def read_chips(path: Path, name: str):
    """One split of an ``export_chips`` file: (reflectance, labels, categories)."""
    from imagery.gallery import to_reflectance

    with np.load(path) as parts:
        return (
            to_reflectance(parts[f"{name}_rgb"]),
            parts[f"{name}_labels"],
            parts[f"{name}_categories"],
        )


def config_changes(items: list[str], config: type) -> dict | str:
    """``KEY=VALUE`` items (values read as YAML) as config fields, or what is wrong with them."""
    import dataclasses

    import yaml

    names = {f.name for f in dataclasses.fields(config)} - {"epochs", "seed", "threads"}
    changes = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            return f"--set {item!r}: not KEY=VALUE with KEY one of {sorted(names)}"
        changes[key] = yaml.safe_load(raw)
    return changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", nargs="?", choices=("recipe", "synthetic"))
    ap.add_argument("--export-chips", type=Path, help="write the train and val chips, then stop")
    ap.add_argument("--chips", type=Path, help="read the chips --export-chips wrote")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--epochs", type=int, help="default: the recipe's")
    ap.add_argument("--synthetic-weight", type=float, default=0.6)
    ap.add_argument("--out", type=Path, help="write the verifier and the figures here")
    ap.add_argument("--seed", type=int, help="default: the recipe's")
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="other VerifierConfig fields than the recipe's (e.g. batch_size=64)",
    )
    ap.add_argument(
        "--verifier",
        type=Path,
        nargs="+",
        help="score this trained verifier, or the ensemble of several (recipe only)",
    )
    args = ap.parse_args()

    from benchmarks.train_default_bundle import (
        VERIFIER,
        balanced_weights,
        load_verifier,
        save_verifier,
    )
    from imagery.stats import roc_auc, sensitivity_at_specificity
    from training.devices import resolve_device
    from training.verifier import VerifierConfig, chip_logits, sigmoid, train_verifier

    if args.export_chips:
        export_chips(args.export_chips)
        return
    if args.variant is None:
        ap.error("name a variant (recipe or synthetic), or --export-chips")
    if args.chips and args.variant != "recipe":
        ap.error("--chips holds the gallery's chips alone: the recipe variant")
    device = resolve_device(args.device)
    if args.chips:
        images, train_labels, _ = read_chips(args.chips, "train")
        val_images, val_labels, val_categories = read_chips(args.chips, "val")
    else:
        from imagery.gallery import load_gallery

        gallery = load_gallery()
        train, val = gallery.split("train"), gallery.split("val")
        images, train_labels = train.images, train.labels
        val_images, val_labels, val_categories = val.images, val.labels, val.categories
    labels = train_labels.astype(np.float32)
    weights = balanced_weights(train_labels)
    if args.variant == "synthetic":
        parts = synthetic_chips(TRAIN_SEED, [n for n, _ in SYNTHETIC_MIX])
        syn_x = np.concatenate([x for x, _ in parts])
        syn_y = np.concatenate([y for _, y in parts])
        images = np.concatenate([images, syn_x])
        labels = np.concatenate([labels, syn_y.astype(np.float32)])
        weights = np.concatenate([weights, args.synthetic_weight * balanced_weights(syn_y)])
    if args.verifier:
        if args.variant != "recipe":
            ap.error("--verifier scores a recipe run's verifier: use the recipe variant")
        if args.out or args.epochs or args.seed is not None or args.set:
            ap.error(
                "--verifier scores trained verifiers: --out, --epochs, --seed, --set train one"
            )
        members = [(m.to(device), c) for m, c in map(load_verifier, args.verifier)]
        history, seconds = [], 0.0
    else:
        epochs = args.epochs or VERIFIER["epochs"]
        seed = VERIFIER["seed"] if args.seed is None else args.seed
        changes = config_changes(args.set, VerifierConfig)
        if isinstance(changes, str):
            ap.error(changes)
        cfg = VerifierConfig(
            **{**VERIFIER, **changes, "epochs": epochs, "seed": seed, "threads": 1}
        )
        print(f"{args.variant}: {len(labels)} chips ({int(labels.sum())} mines), {cfg.epochs} ep.")
        t0 = time.perf_counter()
        model, history = train_verifier(
            images,
            labels,
            cfg,
            val=(val_images, val_labels),
            weights=weights,
            log=print,
            device=device,
        )
        seconds = time.perf_counter() - t0
        members = [(model.to(device), cfg)]

    def score(images: np.ndarray) -> np.ndarray:
        """P(mining): one verifier's 8-view score, or its ensemble's (mean logit)."""
        logits = [chip_logits(m, images, c, device=device) for m, c in members]
        return sigmoid(np.mean(logits, axis=0))

    p = score(val_images)
    figures: dict = {
        "variant": args.variant,
        "verifiers": [str(v) for v in args.verifier or []],
        "epochs": [c.epochs for _, c in members],
        "seeds": [c.seed for _, c in members],
        "changes": args.set,
        "device": device,
        "train_seconds": round(seconds, 1),
        "val_auroc": roc_auc(p, val_labels),
        "val_sensitivity_at_specificity_0.98": sensitivity_at_specificity(p, val_labels, 0.98),
        "val_riverbank_mean_probability": float(p[val_categories == "riverbank"].mean()),
    }
    held_out = (
        [] if args.chips else synthetic_chips(HELD_OUT_SEED, [HELD_OUT_CHIPS] * len(SYNTHETIC_MIX))
    )
    for (_, options), (x, y) in zip(SYNTHETIC_MIX[: len(held_out)], held_out, strict=True):
        look = f"{options['palette']}_{options['level']}"
        q = score(x)
        figures[f"synthetic_{look}_auroc"] = roc_auc(q, y)
        figures[f"synthetic_{look}_mine_mean_probability"] = float(q[y == 1].mean())
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        save_verifier(model.cpu(), cfg, args.out / "verifier.pt")
        (args.out / "figures.json").write_text(json.dumps({**figures, "history": history}))


if __name__ == "__main__":
    main()
