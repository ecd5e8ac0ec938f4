"""Service benchmark: end-to-end gRPC throughput vs the bare model forward, on the same tiles.

    python benchmarks/bench_service.py --bundle DIR [--tiles 4 --tile-size 512] [--full-scene]

1. Writes ``--tiles`` synthetic scenes (imagery.synthetic) of ``--tile-size`` px.
2. Bare forward: every window of those tiles, read into memory beforehand, through
   ``model.predict`` in batches of ``--max-batch`` (same precision as the server): windows/s.
3. End to end: an in-process server (same model object) on 127.0.0.1 and the SDK sending the tiles
   with ``--concurrency`` clients (bytes over gRPC, decode, windows, model, merge, polygons,
   protobuf back): windows/s, and the ratio to (2). Target >= 0.9 on CPU.
4. ``--full-scene``: a ``--scene-size`` (10980) px synthetic tile through DetectScene (by URI under
   the server's root): seconds, peak RSS of this process, peak GPU memory. Slow on CPU.
Prints one JSON document (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagery.scene import open_scene  # noqa: E402
from imagery.synthetic.output import write_large_tile, write_scene  # noqa: E402
from imagery.windows import WindowSpec, iter_windows  # noqa: E402
from service.batching import autocast, resolve_precision  # noqa: E402
from service.client import DetectionClient  # noqa: E402
from service.server import DetectionServer, ServerConfig, load_model  # noqa: E402
from training.engines.base import DEFAULT_MIN_SCORE  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_windows(paths: list[Path], spec: WindowSpec, bands: list[str]) -> np.ndarray:
    chips = []
    for path in paths:
        with open_scene(path, bands=bands) as scene:
            g = scene.grid
            for w in iter_windows(g.height, g.width, spec):
                chip = np.full((len(bands), spec.size, spec.size), np.nan, np.float32)
                data = scene.read(w)
                chip[:, : data.shape[1], : data.shape[2]] = data
                chips.append(chip)
    return np.stack(chips)


def bare_forward(model, windows: np.ndarray, batch: int, precision: str, rounds: int) -> float:
    threshold = DEFAULT_MIN_SCORE / 2  # what the server asks of the model for default requests

    def once() -> None:
        for i in range(0, len(windows), batch):
            with autocast(precision):
                model.predict(windows[i : i + batch], score_threshold=threshold)

    once()  # warm-up
    _sync(model)
    start = time.perf_counter()
    for _ in range(rounds):
        once()
    _sync(model)
    return rounds * len(windows) / (time.perf_counter() - start)


def _sync(model) -> None:
    if str(getattr(model, "device", "cpu")).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def end_to_end(address: str, paths: list[Path], concurrency: int, rounds: int, n_windows: int):
    with DetectionClient(address, timeout_s=3600) as client:
        client.detect_tile(paths[0])  # warm-up
        jobs = [p for _ in range(rounds) for p in paths]
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(client.detect_tile, jobs))
        seconds = time.perf_counter() - start
    sites = sum(len(r.sites) for r in results)
    return rounds * n_windows / seconds, seconds, sites


def full_scene(address: str, root: Path, size: int, model) -> dict:
    path = root / "full_scene.tif"
    t0 = time.perf_counter()
    files = write_large_tile(path, size=size, seed=7, progress=False)
    written = time.perf_counter() - t0
    print(f"full scene written in {written:.0f} s; detecting", flush=True)
    if str(getattr(model, "device", "cpu")).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    rss_before = _peak_rss_mb()
    with DetectionClient(address, timeout_s=7200) as client:
        start = time.perf_counter()
        sites, windows = 0, 0
        for msg in _scene_by_uri(client, path):
            sites += len(msg.sites)
            windows = msg.windows_total
        seconds = time.perf_counter() - start
    out = {
        "size_px": size,
        "tile_bytes": path.stat().st_size,
        "truth_instances": files.instances,
        "write_seconds": round(written, 1),
        "seconds": round(seconds, 2),
        "windows": windows,
        "sites": sites,
        "peak_rss_mb": round(_peak_rss_mb(), 0),
        "peak_rss_mb_before": round(rss_before, 0),
    }
    if str(getattr(model, "device", "cpu")).startswith("cuda"):
        import torch

        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 0)
    return out


def _scene_by_uri(client: DetectionClient, path: Path):
    """DetectScene with a URI header: the server reads the file under its root, no upload."""
    from asmspotter.v1 import detection_pb2 as pb

    header = pb.SceneHeader(tile=pb.Tile(uri=path.name, tile_id=path.stem))
    yield from client.stub.DetectScene(
        iter([pb.DetectSceneRequest(header=header)]), timeout=7200, metadata=client.config.metadata
    )


def untrained_bundle(root: Path, device: str | None, iters: int, chip_size: int = 256) -> Path:
    """A bundle from the real training code after ``iters`` steps on a few synthetic scenes: the
    real architecture and bundle format, barely trained weights. For timing only, when no trained
    bundle is at hand (an untrained head returns ~100 weak detections per window)."""
    from imagery.synthetic.output import generate_dataset
    from training import cli as training_cli

    generate_dataset(root / "ds", 4, 512, chip_size, seed=5, val_fraction=0.25)
    parser = argparse.ArgumentParser()
    training_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "train",
            "--data",
            str(root / "ds"),
            "--out",
            str(root / "run"),
            "--export",
            str(root / "bundle"),
            f"chip_size={chip_size}",
            "batch_size=2",
            "num_workers=0",
            f"device={device or 'auto'}",
            f"max_iter={iters}",
            "warmup_iters=1",
            "eval_period=0",
            "checkpoint_period=100000",
            "log_period=10",
            f"steps=[{max(1, iters * 3 // 4)}]",
        ]
    )
    args.handler(args)
    return root / "bundle"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="model bundle (default: service/default_bundle)")
    ap.add_argument(
        "--untrained", action="store_true", help="time a barely trained bundle made on the spot"
    )
    ap.add_argument("--train-iters", type=int, default=2, help="with --untrained")
    ap.add_argument("--save-bundle", help="with --untrained: copy the bundle made here")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--model-workers", type=int, default=1)
    ap.add_argument("--full-scene", action="store_true", help="also time a 10980 px scene")
    ap.add_argument("--scene-size", type=int, default=10980)
    ap.add_argument("--workdir", help="where tiles go (default: a temporary folder)")
    ap.add_argument("--out", help="write the JSON result here too")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        bundle = (
            untrained_bundle(root / "untrained", args.device, args.train_iters)
            if args.untrained
            else args.bundle
        )
        if args.untrained and args.save_bundle:
            shutil.copytree(bundle, args.save_bundle, dirs_exist_ok=True)
        model = load_model(bundle, args.device)
        info = model.info
        precision = resolve_precision(args.precision, getattr(model, "device", "cpu"))
        spec = WindowSpec(int(info["chip_size"]), int(info["chip_size"]) // 4)
        paths = [
            write_scene(root, seed=100 + i, height=args.tile_size, width=args.tile_size).tile
            for i in range(args.tiles)
        ]
        windows = read_windows(paths, spec, list(info["bands"]))
        bare = bare_forward(model, windows, args.max_batch, precision, args.rounds)
        config = ServerConfig(
            address="127.0.0.1:0",
            max_active=args.concurrency,
            max_queued=4 * args.concurrency,
            max_batch=args.max_batch,
            precision=args.precision,
            model_workers=args.model_workers,
            allowed_root=str(root),
            max_tile_pixels=max(args.scene_size, args.tile_size) ** 2,
        )
        server = DetectionServer(config, model=model)
        server.start()
        server.load()
        try:
            address = f"127.0.0.1:{server.port}"
            e2e, seconds, sites = end_to_end(
                address, paths, args.concurrency, args.rounds, len(windows)
            )
            result = {
                "model": {k: info.get(k) for k in ("name", "version", "engine", "chip_size")},
                "untrained": args.untrained,
                "train_iters": args.train_iters if args.untrained else None,
                "device": str(getattr(model, "device", "cpu")),
                "precision": precision,
                "model_workers": args.model_workers,
                "tiles": args.tiles,
                "tile_size_px": args.tile_size,
                "windows_per_round": len(windows),
                "bare_forward_windows_per_s": round(bare, 2),
                "grpc_windows_per_s": round(e2e, 2),
                "ratio": round(e2e / bare, 3),
                "grpc_seconds": round(seconds, 2),
                "sites": sites,
            }
            print(json.dumps(result), flush=True)
            if args.full_scene:
                result["full_scene"] = full_scene(address, root, args.scene_size, model)
        finally:
            server.stop(grace=5)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
