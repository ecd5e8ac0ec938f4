"""Benchmark: how far the 8-view score moves a site from its one-view screen.

A bundle's site verifier (``training.verifier.SiteVerifier``) first scores every context chip on
one view and drops the sites that could not reach the request's ``min_score`` even if the 8-view
mean raised the verifier's logit by ``SCREEN_MARGIN``; the rest get the 8-view mean. This prints,
on the gallery's train and val chips (the test split stays for ``bench_real_chips.py``), the
distribution of the verifier logit's change from one view to eight (and of the fused logit's,
scaled by the bundle's fusion): the margin must lie well above its largest value.

    .venv/bin/python benchmarks/bench_verifier_screen.py [--bundle DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="default: the packaged default bundle")
    args = ap.parse_args()

    from imagery.gallery import load_gallery
    from training.bundle import PACKAGED_BUNDLE, read_info
    from training.verifier import SCREEN_MARGIN, SiteVerifier

    bundle = args.bundle or PACKAGED_BUNDLE
    verifier = SiteVerifier.from_bundle(bundle, read_info(bundle), "cpu")
    if verifier is None:
        raise SystemExit(f"{bundle} has no verifier")
    gallery = load_gallery()
    chips = np.concatenate([gallery.split("train").images, gallery.split("val").images])
    shift = verifier.logits(chips) - verifier.logits(chips, tta=False)
    fused = abs(verifier.fusion.verifier) * shift
    figures = {
        "bundle": str(bundle),
        "chips": len(chips),
        "logit_shift_mean": float(shift.mean()),
        "logit_shift_std": float(shift.std()),
        "logit_shift_max_abs": float(np.abs(shift).max()),
        "logit_shift_q999_abs": float(np.quantile(np.abs(shift), 0.999)),
        "fused_logit_rise_max": float(fused.max()),  # what the screen must allow for
        "screen_margin": SCREEN_MARGIN,
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
