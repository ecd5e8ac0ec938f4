"""Benchmark: windowed reading of 6-band stacked tiles keeps memory flat and time linear in area.

For each size (default 2048² and 10980² px, a full Sentinel-2 tile at 10 m) it
  1. writes a stacked tile (uint16, 6 bands, tiled 512 px, deflate; docs/design.md) block by block
     with ``imagery.tiles.TileWriter`` in a child process,
  2. reads it window by window (``imagery.windows.iter_windows``, chip 512, overlap 64) through
     ``imagery.scene.open_scene(path).read(window)`` in a fresh child process,
  3. reads the same windows with a bare ``rasterio`` ``src.read(window=...)`` in another child,
and prints each child's peak RSS (``resource.getrusage``) and seconds, seconds per megapixel, and
the project reader's throughput as a fraction of the bare rasterio read.

Run on demand (not part of the test suite):
    .venv/bin/python benchmarks/bench_windows.py [--sizes 2048 10980] [--workdir DIR] [--keep]

GDAL's block cache counts towards RSS; it defaults to 5% of the machine's RAM, so the children run
with GDAL_CACHEMAX=--gdal-cache-mb (default 256 MB) to measure the same thing on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
LIMIT_BYTES = 2 * 1024**3


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child_write(path: str, size: int) -> dict:
    import numpy as np
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from imagery.scene import Grid
    from imagery.tiles import TileWriter

    base_rss = _peak_rss_bytes()
    grid = Grid(CRS.from_epsg(32629), from_origin(300000, 1300000, 10, 10), size, size)
    rng = np.random.default_rng(0)
    block = 1024
    start = time.perf_counter()
    with TileWriter(path, grid, BANDS, scene_id=f"bench{size}", cog=False) as writer:
        for row in range(0, size, block):
            h = min(block, size - row)
            for col in range(0, size, block):
                w = min(block, size - col)
                yy, xx = np.mgrid[row : row + h, col : col + w]
                field = 1500 + 800 * np.sin(xx / 300.0) * np.cos(yy / 450.0)  # land-cover-ish
                noise = rng.integers(-60, 60, (len(BANDS), h, w))
                dn = field[None] * np.arange(1, len(BANDS) + 1)[:, None, None] / 3 + noise
                writer.write(Window(col, row, w, h), np.clip(dn, 1, 10000).astype(np.uint16))
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss": _peak_rss_bytes(),
        "base_rss": base_rss,
        "file_bytes": os.path.getsize(path),
    }


def _windows(height: int, width: int) -> list:
    from imagery.windows import WindowSpec, iter_windows

    return list(iter_windows(height, width, WindowSpec(512, 64)))


def child_read(path: str, mode: str) -> dict:
    import numpy as np
    import rasterio

    from imagery.scene import open_scene

    base_rss = _peak_rss_bytes()
    checksum = 0.0
    start = time.perf_counter()
    if mode == "scene":
        with open_scene(path) as scene:
            windows = _windows(scene.grid.height, scene.grid.width)
            for win in windows:
                chip = scene.read(win)  # float32 reflectance, NaN = nodata
                checksum += float(chip[:, 0, 0].sum())
    else:
        with rasterio.open(path) as src:
            windows = _windows(src.height, src.width)
            for win in windows:
                chip = src.read(window=win)  # uint16 DN as stored
                checksum += float(chip[:, 0, 0].sum())
    seconds = time.perf_counter() - start
    pixels_read = sum(int(w.width * w.height) for w in windows)
    return {
        "seconds": seconds,
        "peak_rss": _peak_rss_bytes(),
        "base_rss": base_rss,
        "windows": len(windows),
        "pixels_read": pixels_read,
        "checksum": float(np.float32(checksum)),
    }


def _run_child(args: list[str], cache_mb: int) -> dict:
    env = dict(os.environ, GDAL_CACHEMAX=str(cache_mb))
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 1024**2:8.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 10980])
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the tiles")
    parser.add_argument("--keep", action="store_true", help="keep the written tiles")
    parser.add_argument("--gdal-cache-mb", type=int, default=256)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, path, param = args.child
        result = child_write(path, int(param)) if kind == "write" else child_read(path, param)
        print(json.dumps(result))
        return 0

    tmp = tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_windows_")
    workdir = Path(tmp.name)
    rows = []
    try:
        for size in args.sizes:
            path = workdir / f"stack_{size}.tif"
            print(f"[{size}x{size}x{len(BANDS)}] writing ...", flush=True)
            write = _run_child(["write", str(path), str(size)], args.gdal_cache_mb)
            print(f"[{size}x{size}x{len(BANDS)}] reading ...", flush=True)
            scene = _run_child(["read", str(path), "scene"], args.gdal_cache_mb)
            bare = _run_child(["read", str(path), "bare"], args.gdal_cache_mb)
            rows.append((size, write, scene, bare))
    finally:
        if args.keep:
            print(f"tiles kept in {workdir}")
        else:
            tmp.cleanup()

    print(f"\nGDAL_CACHEMAX={args.gdal_cache_mb} MB, windows 512 px with 64 px overlap, 6 bands")
    head = (
        f"{'size':>12} {'windows':>7} {'file MB':>8} | {'write s':>8} {'RSS MB':>8} | "
        f"{'scene s':>8} {'s/Mpx':>6} {'RSS MB':>8} | {'bare s':>7} {'s/Mpx':>6} {'RSS MB':>8} | "
        f"{'scene/bare':>10}"
    )
    print(head)
    print("-" * len(head))
    ok = True
    for size, write, scene, bare in rows:
        mpx = size * size / 1e6
        ratio = bare["seconds"] / scene["seconds"]
        peak = max(write["peak_rss"], scene["peak_rss"], bare["peak_rss"])
        ok &= peak < LIMIT_BYTES
        print(
            f"{f'{size}x{size}':>12} {scene['windows']:>7} {_mb(write['file_bytes'])} | "
            f"{write['seconds']:8.1f} {_mb(write['peak_rss'])} | "
            f"{scene['seconds']:8.2f} {scene['seconds'] / mpx:6.3f} {_mb(scene['peak_rss'])} | "
            f"{bare['seconds']:7.2f} {bare['seconds'] / mpx:6.3f} {_mb(bare['peak_rss'])} | "
            f"{ratio:10.2f}"
        )
    print(
        "\nbaseline RSS after imports (MB): "
        + ", ".join(f"{s}: scene {_mb(r['base_rss']).strip()}" for s, _, r, _ in rows)
    )
    if len(rows) >= 2:
        (s0, _, a, _), (s1, _, b, _) = rows[0], rows[-1]
        per0, per1 = a["seconds"] / (s0 * s0 / 1e6), b["seconds"] / (s1 * s1 / 1e6)
        growth = _mb(b["peak_rss"] - a["peak_rss"]).strip()
        print(
            f"area x{(s1 / s0) ** 2:.1f}: scene-read time x{b['seconds'] / a['seconds']:.1f} "
            f"(s/Mpx {per0:.3f} -> {per1:.3f}, ratio {per1 / per0:.2f}); "
            f"scene-read peak RSS grows by {growth} MB"
        )
    print(
        "scene/bare = bare rasterio seconds / open_scene seconds "
        "(1.0 = as fast as a bare read; the scene also converts DN to float reflectance + NaN)"
    )
    print(f"memory < 2 GB for every size and step: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
