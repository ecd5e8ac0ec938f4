"""Imagery sub-commands: ``stack`` and ``inspect``."""

from __future__ import annotations

import argparse
import json

from imagery import gallery
from imagery.scene import open_scene
from imagery.sensors import SENSORS
from imagery.stack import stack


def band_order_arg(p: argparse.ArgumentParser) -> None:
    """``--band-order B02,B03,...``: a stacked GeoTIFF's bands in file order (for files whose band
    descriptions do not name them; the order is never guessed)."""
    p.add_argument(
        "--band-order",
        type=lambda text: [b.strip() for b in text.split(",") if b.strip()],
        metavar="B02,B03,...",
        help="the tile's bands in file order, when its band descriptions do not name them "
        "(S2 names or STAC common names: blue,green,red,nir,swir16,swir22)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stack",
        help="write the model's band stack of a scene as a cloud-optimised GeoTIFF",
        description="Stack a scene (stacked GeoTIFF, Sentinel-2 band folder with STAC item or "
        "SAFE-style JP2, Sentinel-1 GRD folder) into one tile the service accepts.",
    )
    p.add_argument("scene", help="scene folder or GeoTIFF")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output .tif")
    p.add_argument("--sensor", choices=sorted(SENSORS), help="override sensor detection")
    p.add_argument("--bands", nargs="+", help="bands to stack (default: the sensor's model stack)")
    band_order_arg(p)
    p.add_argument("--keep-clouds", action="store_true", help="do not mask SCL cloud/shadow")
    p.add_argument(
        "--resolution", type=float, help="Sentinel-1: output grid spacing in m (default 10)"
    )
    p.set_defaults(handler=_stack)

    p = subparsers.add_parser("data", help="import real datasets into the project's dataset format")
    data = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data.add_parser(
        "import-gallery",
        help="the Amazon Mining Watch gallery (real Sentinel-2 chips) as a COCO chip dataset",
        description="Cut the gallery's mosaics into 48 px chips and write them as 3-band "
        "GeoTIFFs (B02 B03 B04, TOA reflectance) with annotations.json; chip labels, categories "
        "and the fixed split by mosaic group are image fields. The chips keep no coordinates: "
        "their grid is nominal and marked georeferenced=false.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "-o", "--out", "--output", dest="output", required=True, help="dataset folder to write"
    )
    p.add_argument(
        "--root",
        default=str(gallery.default_root()),
        help="the gallery folder (holding mosaics/)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        choices=[*gallery.SPLITS, "unlabelled"],
        default=[*gallery.SPLITS, "unlabelled"],
        help="which splits to write",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_import_gallery)

    p = subparsers.add_parser("inspect", help="print a scene's sensor, bands and grid as JSON")
    p.add_argument("scene", help="scene folder or GeoTIFF")
    p.add_argument("--sensor", choices=sorted(SENSORS), help="override sensor detection")
    band_order_arg(p)
    p.set_defaults(handler=_inspect)


def _stack(args: argparse.Namespace) -> int:
    stats = stack(
        args.scene,
        args.output,
        sensor=args.sensor,
        bands=args.bands,
        mask_clouds=not args.keep_clouds,
        progress=not args.quiet,
        resolution=args.resolution,
        band_order=args.band_order,
    )
    print(
        f"wrote {args.output}: {stats['pixels']} px, {stats['valid_fraction']:.1%} valid, "
        f"{stats['cloud_fraction']:.1%} masked as cloud/shadow"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    with open_scene(args.scene, sensor=args.sensor, band_order=args.band_order) as scene:
        g = scene.grid
        info = {
            "scene_id": scene.scene_id,
            "sensor": scene.sensor.name,
            "bands": list(scene.bands),
            "crs": g.crs.to_string(),
            "width": g.width,
            "height": g.height,
            "resolution_m": g.res,
            "bounds": list(g.bounds),
            "datetime": scene.datetime,
        }
    print(json.dumps(info, indent=2))
    return 0


def _import_gallery(args: argparse.Namespace) -> int:
    counts = gallery.import_gallery(
        args.output, args.root, tuple(args.splits), progress=not args.quiet
    )
    total = sum(counts.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"wrote {total} chips ({parts}) and {args.output}/annotations.json")
    print(f"data: {gallery.ATTRIBUTION}")
    return 0
