"""Full-tile benchmark: the plain path (every valid window, fp32) against the optimised path
(window prefilter on), in one run on the same generated mostly-forest tile.

    python benchmarks/bench_full_tile.py [--size 10980] [--seed 0] [--cache DIR] [--bundle DIR]
        [--raw]

Both paths apply the per-site spectral test (``Predictor(site_test=True)``, the default);
``--raw`` adds a third run with every window and no site test, to show what that test removes.
``--end-to-end`` also times the CLI on the same tile: ``asmspotter detect TILE --local`` and
``asmspotter detect TILE --server`` against ``asmspotter serve`` on 127.0.0.1 (wall seconds, peak
RSS of the detecting process and of the server).

Each path reports ``windows`` (all windows of the tile), ``windows_valid`` (not all nodata) and
``windows_run`` (those the model ran on: the valid ones the prefilter kept); the README's table
quotes ``windows_run``, ``seconds``, ``peak_rss_mb`` and ``sites``.

1. Generates the tile once with ``imagery.synthetic.output.write_large_tile`` (rainforest, a few
   mining clusters along rivers, clouds, a nodata swath edge) into ``--cache`` (reused after).
2. Runs each path in its own child process (``Predictor.detect_file``, CPU, fp32, ``--threads``
   torch threads): seconds (model load apart) and the child's peak RSS.
3. Prints the speed-up, the share of windows the prefilter skipped, the sites of both paths
   matched one to one (IoU >= 0.5; recall of the optimised path against the plain one) and both
   against the generator's truth GeoJSON. One JSON document (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shapely.strtree import STRtree  # noqa: E402

from imagery.geometry import iou  # noqa: E402
from imagery.vector import read_features, write_features  # noqa: E402

MATCH_IOU = 0.5


def tile_for(cache: Path, size: int, seed: int, clusters: int | None) -> Path:
    from imagery.synthetic.output import write_large_tile

    tag = "auto" if clusters is None else str(clusters)
    path = cache / f"full_tile_{size}_seed{seed}_clusters{tag}.tif"
    if not (path.exists() and path.with_suffix(".geojson").exists()):
        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_large_tile(path, size, seed, clusters)
        print(f"generated {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def run_child(args: argparse.Namespace) -> None:
    """One path in this process: detect, write the sites (tile CRS), print a JSON line."""
    import torch

    from imagery.scene import open_scene
    from service.predictor import DetectOptions, Predictor
    from service.server import load_model

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.bundle, "cpu")
    predictor = Predictor(
        model,
        max_batch=args.max_batch,
        precision="fp32",
        prefilter=args.child == "optimised",
        site_test=args.child != "raw",
    )
    predictor.warm_up()
    load_s = time.perf_counter() - t0
    with open_scene(args.tile) as scene:
        crs = scene.grid.crs
    t0 = time.perf_counter()
    result = predictor.detect_file(args.tile, DetectOptions(args.min_score, crs.to_string()))
    seconds = time.perf_counter() - t0
    predictor.close()
    props = [{"class": s.class_name, "score": s.score} for s in result.sites]
    write_features(
        args.sites, [s.geometry for s in result.sites], props, crs, geometry_type="MultiPolygon"
    )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "path": args.child,
                "seconds": round(seconds, 2),
                "load_seconds": round(load_s, 2),
                "peak_rss_mb": round(peak_kib / 1024, 1),
                "windows": result.window_count,
                "windows_valid": result.windows_run + result.windows_skipped,
                "windows_run": result.windows_run,
                "windows_skipped": result.windows_skipped,
                "sites": len(result.sites),
            }
        )
    )


def _peak_mb(pid: int) -> float:
    """Peak resident memory of a running process (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall seconds and peak RSS of one command (its own rusage, from wait4)."""
    import os
    import tempfile

    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def end_to_end(tile: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``asmspotter detect --local`` and ``--server`` (a real ``asmspotter serve``) on the tile."""
    import os
    import socket

    cli = [sys.executable, "-m", "asmspotter.cli"]
    bundle = ["--bundle", args.bundle] if args.bundle else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = tile.with_name(f"{tile.stem}.e2e.geojson")
    local = _timed([*cli, "detect", str(tile), "--local", *bundle, "-o", str(out)], env)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = [*cli, "serve", "--address", f"127.0.0.1:{port}", "--device", "cpu", *bundle]
    server = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        from service.client import DetectionClient

        with DetectionClient(f"127.0.0.1:{port}") as client:
            client.wait_serving(timeout=300)
        remote = _timed(
            [*cli, "detect", str(tile), "--server", f"127.0.0.1:{port}", "-o", str(out)], env
        )
        remote["server_peak_rss_mb"] = _peak_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    remote["tile_mb"] = round(tile.stat().st_size / 2**20, 1)
    return {"detect_local": local, "detect_server": remote}


def match(a: list, b: list) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU >= MATCH_IOU, best pairs first: (i in a, j in b, iou)."""
    if not a or not b:
        return []
    tree = STRtree(b)
    pairs = []
    for i, g in enumerate(a):
        for j in tree.query(g, predicate="intersects"):
            v = iou(g, b[int(j)])
            if v >= MATCH_IOU:
                pairs.append((v, i, int(j)))
    used_a, used_b, out = set(), set(), []
    for v, i, j in sorted(pairs, reverse=True):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, v))
    return out


def compare(
    plain: Path, fast: Path, truth: Path, names: tuple[str, str] = ("plain", "optimised")
) -> dict[str, Any]:
    a, b = names
    p, f = read_features(plain), read_features(fast)
    t = read_features(truth).to_crs(p.crs)
    pf = match(p.geometries, f.geometries)
    same_class = sum(p.properties[i]["class"] == f.properties[j]["class"] for i, j, _ in pf)
    out: dict[str, Any] = {
        f"matched_{a}_{b}": len(pf),
        f"recall_{b}_vs_{a}": round(len(pf) / len(p), 4) if len(p) else 1.0,
        f"extra_in_{b}": len(f) - len(pf),
        "same_class": same_class,
        "min_iou_matched": round(min((v for *_, v in pf), default=1.0), 4),
        "truth_sites": len(t),
    }
    for name, found in ((a, p), (b, f)):
        m = match(t.geometries, found.geometries)
        out[f"recall_{name}_vs_truth"] = round(len(m) / len(t), 4) if len(t) else 1.0
        out[f"precision_{name}_vs_truth"] = round(len(m) / len(found), 4) if len(found) else 1.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10980, help="tile size in px (10980: full S2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clusters", type=int, help="mining clusters (default: the generator's)")
    ap.add_argument("--cache", default="/tmp/asmspotter-bench", help="folder for the tile")
    ap.add_argument("--bundle", help="model bundle (default: service/default_bundle)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per child")
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--min-score", type=float, help="default: the bundle's default threshold")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--raw", action="store_true", help="also run every window without site test")
    ap.add_argument("--end-to-end", action="store_true", help="also time the detect commands")
    ap.add_argument("--child", choices=["raw", "plain", "optimised"], help=argparse.SUPPRESS)
    ap.add_argument("--tile", help=argparse.SUPPRESS)
    ap.add_argument("--sites", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    tile = tile_for(Path(args.cache), args.size, args.seed, args.clusters)
    runs: dict[str, dict[str, Any]] = {}
    for path in ("raw", "plain", "optimised") if args.raw else ("plain", "optimised"):
        sites = tile.with_name(f"{tile.stem}.{path}.sites.geojson")
        cmd = [sys.executable, __file__, "--child", path, "--tile", str(tile)]
        cmd += ["--sites", str(sites), "--threads", str(args.threads)]
        cmd += ["--max-batch", str(args.max_batch)]
        if args.min_score is not None:
            cmd += ["--min-score", str(args.min_score)]
        if args.bundle:
            cmd += ["--bundle", args.bundle]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs[path] = json.loads(done.stdout.strip().splitlines()[-1]) | {"sites_file": str(sites)}
        print(f"{path}: {runs[path]}", file=sys.stderr)
    plain, fast = runs["plain"], runs["optimised"]
    report = {
        "tile": str(tile),
        "size": args.size,
        "threads": args.threads,
        "plain": plain,
        "optimised": fast,
        "speedup": round(plain["seconds"] / fast["seconds"], 2),
        "rss_ratio": round(plain["peak_rss_mb"] / fast["peak_rss_mb"], 2),
        "windows_skipped_share": round(fast["windows_skipped"] / fast["windows_valid"], 4),
        "sites": compare(
            Path(plain["sites_file"]), Path(fast["sites_file"]), tile.with_suffix(".geojson")
        ),
    }
    if "raw" in runs:
        report["raw"] = runs["raw"]
        report["sites_raw_vs_plain"] = compare(
            Path(runs["raw"]["sites_file"]),
            Path(plain["sites_file"]),
            tile.with_suffix(".geojson"),
            ("raw", "plain"),
        )
    if args.end_to_end:
        report["end_to_end"] = end_to_end(tile, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
