"""The window prefilter's misses and skip share, measured on generated scenes (no model runs).

    python benchmarks/bench_prefilter.py [--seeds 30] [--tile-size 10980] [--tile-seed 0]

1. ``--seeds`` generated 1024 px scenes (two in three with clouds and a nodata edge, the rest
   with a 50 % chance of each): every site whose own grouped candidate pixels are fewer than
   ``min(min_pixels, its pixels)``, and every 256 px service window holding a site that the
   prefilter skips. Both lists are printed in full.
2. The benchmark tile of ``bench_full_tile.py`` (``write_large_tile``'s plan, rendered block by
   block in memory): valid windows, windows kept, and windows holding a site that were skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagery.synthetic.layout import make_plan  # noqa: E402
from imagery.synthetic.render import render  # noqa: E402
from imagery.synthetic.scene import generate_scene  # noqa: E402
from imagery.synthetic.spectra import BANDS  # noqa: E402
from imagery.windows import WindowSpec, iter_windows  # noqa: E402
from service.prefilter import WindowPrefilter  # noqa: E402

SPEC = WindowSpec(256, 64)  # the service's default windows


def scene_misses(seeds: int) -> dict:
    prefilter = WindowPrefilter(BANDS)
    need = prefilter.t.min_pixels
    sites, missed_sites, site_windows, skipped_site_windows = 0, [], 0, []
    for seed in range(seeds):
        odds = 1.0 if seed % 3 else 0.5
        scene = generate_scene(seed, 1024, 1024, cloud_probability=odds, nodata_probability=odds)
        grouped = prefilter.grouped(scene.image)  # whole scene: the same pixels per site
        ids, counts = np.unique(scene.labels[scene.labels > 0], return_counts=True)
        for site_id, count in zip(ids, counts, strict=True):
            sites += 1
            own = int(np.count_nonzero(grouped & (scene.labels == site_id)))
            if own < min(need, count):
                missed_sites.append({"seed": seed, "site": int(site_id), "px": int(count)})
        for win in iter_windows(1024, 1024, SPEC):
            r, c = int(win.row_off), int(win.col_off)
            labels = scene.labels[r : r + SPEC.size, c : c + SPEC.size]
            if (labels > 0).any():
                site_windows += 1
                if not prefilter.keep(scene.image[:, r : r + SPEC.size, c : c + SPEC.size]):
                    skipped_site_windows.append({"seed": seed, "row": r, "col": c})
    return {
        "scenes": seeds,
        "sites": sites,
        "sites_without_enough_candidates": missed_sites,
        "windows_with_sites": site_windows,
        "windows_with_sites_skipped": skipped_site_windows,
    }


def tile_skips(size: int, seed: int) -> dict:
    """Renders the benchmark tile's plan in 1024 px blocks, then tests every service window."""
    clusters = int(np.random.default_rng([seed, 3]).integers(3, 9))  # as write_large_tile
    plan = make_plan(seed, size, size, clusters, cloud_probability=1.0, nodata_probability=1.0)
    image = np.empty((len(BANDS), size, size), np.float32)
    sites = np.zeros((size, size), bool)
    for r in range(0, size, 1024):
        for c in range(0, size, 1024):
            h, w = min(1024, size - r), min(1024, size - c)
            out = render(plan, r, c, h, w)
            image[:, r : r + h, c : c + w] = out.image
            sites[r : r + h, c : c + w] = out.labels > 0
    prefilter = WindowPrefilter(BANDS)
    valid = kept = site_windows = 0
    skipped_with_sites = []
    for win in iter_windows(size, size, SPEC):
        r, c = int(win.row_off), int(win.col_off)
        window = image[:, r : r + SPEC.size, c : c + SPEC.size]
        if np.isnan(window).all():
            continue
        valid += 1
        keep = prefilter.keep(window)
        kept += keep
        if sites[r : r + SPEC.size, c : c + SPEC.size].any():
            site_windows += 1
            if not keep:
                skipped_with_sites.append({"row": r, "col": c})
    return {
        "size": size,
        "seed": seed,
        "valid_windows": valid,
        "kept_windows": kept,
        "kept_share": round(kept / valid, 4),
        "windows_with_sites": site_windows,
        "windows_with_sites_skipped": skipped_with_sites,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=30, help="generated 1024 px scenes")
    ap.add_argument("--tile-size", type=int, default=10980, help="0: skip the tile")
    ap.add_argument("--tile-seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    report = {"scenes": scene_misses(args.seeds)}
    if args.tile_size:
        report["tile"] = tile_skips(args.tile_size, args.tile_seed)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
