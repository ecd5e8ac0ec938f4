"""``asmspotter demo``: the whole path on the bundled defaults, in one command.

real Sentinel-2 tile -> stacked COG (when ../shared/data sits beside the repository);
seeded demo tile -> a real gRPC server on 127.0.0.1 with the default bundle -> the client SDK ->
sites as GeoJSON (compared with the tile's exact truth) -> an offline HTML map.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REAL_L2A = (
    REPO.parent / "shared" / "data" / "sentinel-l2a-grd-riotilerpds" / "S2A_29RKH_20200219_0_L2A"
)
DEMO_SEED = 7
DEMO_SIZE = 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole pipeline on the bundled defaults")
    p.add_argument("-o", "--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--bundle", help="model bundle (default: the packaged default bundle)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the demo tile")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if REAL_L2A.is_dir():
        from imagery.stack import stack

        real = out / "S2A_29RKH_20200219_0_L2A.tif"
        stats = stack(REAL_L2A, real, progress=False)
        print(
            f"[1/4] real Sentinel-2 L2A tile stacked: {real} "
            f"({stats['valid_fraction']:.1%} valid, {stats['cloud_fraction']:.1%} cloud masked)"
        )
    else:
        print(f"[1/4] real data not found at {REAL_L2A}; skipping the real-tile step")

    from imagery.synthetic.output import write_scene

    scene = write_scene(out, args.seed, DEMO_SIZE, DEMO_SIZE, clusters=2)
    print(f"[2/4] demo tile (seed {args.seed}): {scene.tile} with {scene.instances} true sites")

    result = _detect_through_server(scene.tile, args.bundle)
    m = result.model  # every feature says which model found it (monitor run reads it)
    features = [
        site.feature(
            source=str(scene.tile),
            model_name=m.name,
            model_version=m.version,
            weights_sha256=m.weights_sha256,
        )
        for site in result.sites
    ]
    from imagery.geometry import feature_collection

    sites_path = out / "sites.geojson"
    identity = {
        "model_name": m.name,
        "model_version": m.version,
        "weights_sha256": m.weights_sha256,
    }
    sites_path.write_text(json.dumps(feature_collection(features, model=identity)))
    matched = _matched(features, json.loads(scene.truth.read_text())["features"])
    print(
        f"[3/4] {len(features)} sites found by {result.model.name} {result.model.version} "
        f"through gRPC ({matched} of {scene.instances} true sites matched at IoU >= 0.5); "
        f"GeoJSON: {sites_path}"
    )

    from monitoring.report import write_html_map

    html = write_html_map(sites_path, scene.tile, out / "map.html", title="AIASMSpotter demo")
    print(f"[4/4] HTML map (opens offline): {html}")
    return 0


def _detect_through_server(tile: Path, bundle: str | None) -> Any:
    """Start a real server on a free loopback port, detect one tile with the SDK, stop."""
    from service.client import DetectionClient
    from service.server import DetectionServer, ServerConfig

    server = DetectionServer(ServerConfig(address="127.0.0.1:0", bundle=bundle))
    port = server.start()
    try:
        server.load()
        with DetectionClient(f"127.0.0.1:{port}") as client:
            client.wait_serving(timeout=120)
            return client.detect_tile(str(tile), timeout=600)
    finally:
        server.stop(grace=5)


def _matched(found: list[dict[str, Any]], truth: list[dict[str, Any]]) -> int:
    """True sites with a found site of IoU >= 0.5 (each found site used once)."""
    from shapely.geometry import shape

    from imagery.geometry import iou

    left = [shape(f["geometry"]) for f in found]
    hits = 0
    for t in truth:
        geom = shape(t["geometry"])
        best = max(range(len(left)), key=lambda i: iou(left[i], geom), default=None)
        if best is not None and iou(left[best], geom) >= 0.5:
            hits += 1
            left.pop(best)
    return hits
