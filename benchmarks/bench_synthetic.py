"""Benchmark: synthetic scene generation speed and the full-size tile's memory.

  1. ``generate_scene`` at 1024² px (several seeds, one core): seconds per scene, for each
     generator setting asked (``imagery.synthetic.chips.SETTINGS``: legacy, amazon-l1c, ...);
  2. ``write_large_tile`` at each size (default 4096² and 10980², a full Sentinel-2 tile at 10 m)
     in a child process: seconds, peak RSS (must stay well under 4 GB) and site count.

Run on demand (not part of the test suite):
    .venv/bin/python benchmarks/bench_synthetic.py [--sizes 4096 10980] [--settings legacy ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LIMIT_BYTES = 4 * 1024**3


def _child_large_tile(path: str, size: int) -> None:
    from imagery.synthetic.output import write_large_tile

    start = time.perf_counter()
    files = write_large_tile(path, size=size, seed=0, progress=False)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": rss, "sites": files.instances}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 10980])
    parser.add_argument("--scenes", type=int, default=5, help="1024² scenes to time")
    parser.add_argument(
        "--settings", nargs="+", default=["legacy", "amazon-l1c"], help="generator settings"
    )
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the written tiles")
    args = parser.parse_args()

    from imagery.synthetic.chips import SETTINGS
    from imagery.synthetic.scene import generate_scene

    for name in args.settings:
        options = SETTINGS[name]
        generate_scene(0, 256, 256, **options)  # warm imports and caches
        times = []
        for seed in range(args.scenes):
            start = time.perf_counter()
            generate_scene(seed, 1024, 1024, **options)
            times.append(time.perf_counter() - start)
        print(
            f"generate_scene 1024² ({name}): mean {sum(times) / len(times):.2f} s, "
            f"max {max(times):.2f} s over {len(times)} scenes"
        )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_synthetic_"))
    for size in args.sizes:
        path = workdir / f"synthetic_{size}.tif"
        code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.bench_synthetic "
        code += f"import _child_large_tile as f; f({str(path)!r}, {size})"
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        res = json.loads(out.strip().splitlines()[-1])
        mb = res["peak_rss"] / 1024**2
        ok = "OK" if res["peak_rss"] < LIMIT_BYTES else "OVER 4 GB"
        print(
            f"write_large_tile {size}²: {res['seconds']:.1f} s "
            f"({res['seconds'] / (size * size / 1e6):.3f} s/Mpx), peak RSS {mb:.0f} MB [{ok}], "
            f"{res['sites']} sites, {path.stat().st_size / 1024**2:.0f} MB on disk"
        )
        if not args.keep:
            path.unlink()
            path.with_suffix(".geojson").unlink()


if __name__ == "__main__":
    main()
