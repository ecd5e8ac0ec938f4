"""The real-chip benchmark: bundles on real Sentinel-2 L1C Amazon chips with people-checked labels.

Every chip of a split of the Amazon Mining Watch gallery (Earth Genome, CC BY 4.0; split by
mosaic, ``imagery.gallery``) goes through the service's own Predictor as a one-chip scene; a
chip's score is its best site's score (0: no site). For each bundle, in one run, it prints chip
AUROC, sensitivity at specificity 0.95 / 0.98 / 0.99, the operating point at the bundle's default
threshold (sensitivity, specificity, precision, F1, false-positive rate per kind of look-alike)
and calibration (expected calibration error, Brier score, reliability table).

    .venv/bin/python benchmarks/bench_real_chips.py [--bundle DIR ...] [--split test] [--limit N]

Without ``--bundle`` the packaged default bundle is measured. The test split is never used for
training or tuning (benchmarks/train_default_bundle.py fits on train, calibrates on val).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The figures of ``training.chip_benchmark.chip_metrics`` as readable lines."""
    d = m["operating_points"]["default"]
    lines = [
        f"bundle {m.get('bundle', '?')}: {m['chips']} chips ({m['mines']} mines)",
        f"  auroc {m['auroc']:.4f}",
        "  sensitivity at specificity "
        + ", ".join(f"{s[-4:]}: {m[s]:.4f}" for s in sorted(m) if s.startswith("sensitivity_at_")),
        f"  mines with any site {m['flagged_mines_any_site']:.4f}",
        f"  default threshold {d['threshold']:.4f}: sensitivity {d['sensitivity']:.4f}"
        f" specificity {d['specificity']:.4f} precision {d['precision']:.4f} f1 {d['f1']:.4f}",
    ]
    for name, point in m["operating_points"].items():
        where = "the default threshold" if name == "default" else f"specificity {name[-4:]}"
        lines.append(
            f"  false-positive rate by category at {where} ({point['threshold']:.4f}): "
            + ", ".join(f"{c} {r:.4f}" for c, r in point["fpr_by_category"].items())
        )
    lines += [
        f"  calibration: ece {m['calibration']['ece']:.4f} brier {m['calibration']['brier']:.4f}",
    ]
    for row in m["calibration"]["reliability"]:
        lines.append(
            f"    score {row['bin']}: {row['chips']:5d} chips, mean score {row['mean_score']:.3f},"
            f" mine fraction {row['mine_fraction']:.3f}"
        )
    if m.get("seconds") is not None:
        lines.append(f"  seconds {m['seconds']:.1f}")
    lines += [f"  note: {n}" for n in m.get("notes", [])]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, action="append", help="bundle folder (repeatable)")
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--limit", type=int, default=0, help="a fixed random part of the split")
    ap.add_argument("--gallery", type=Path, help="gallery folder (default ../shared/data/...)")
    ap.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = ap.parse_args()

    from imagery.gallery import load_gallery
    from training.chip_benchmark import evaluate_bundle_on_chips

    chips = load_gallery(args.gallery).split(args.split).sample(args.limit)
    bundles = args.bundle or [REPO / "service" / "default_bundle"]
    print(f"real-chip benchmark: gallery split {args.split}, {len(chips)} chips")
    report = {}
    for bundle in bundles:
        metrics = evaluate_bundle_on_chips(bundle, chips)
        report[str(bundle)] = metrics
        print("\n".join(summary_lines(metrics)), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
