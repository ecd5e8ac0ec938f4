"""``asmspotter generate scene|dataset|tile``: synthetic Sentinel-2-like data with exact labels."""

from __future__ import annotations

import argparse

from imagery.synthetic.output import generate_dataset, write_large_tile, write_scene


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser(
        "generate",
        help="generate synthetic Sentinel-2-like scenes with exact pit/pond labels",
        description="Seeded synthetic tropical scenes (B02 B03 B04 B08 B11 B12, 10 m, UTM) with "
        "ASM pits and ponds along rivers and unlabelled look-alikes; truth as COCO and GeoJSON.",
    )
    sub = gen.add_subparsers(dest="what", required=True, metavar="WHAT")

    p = sub.add_parser("scene", help="one scene: tile + COCO JSON + GeoJSON truth")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=1024, help="height and width in pixels")
    p.add_argument("--clusters", type=int, help="mining clusters (default: random, may be 0)")
    p.set_defaults(handler=_scene)

    p = sub.add_parser("dataset", help="a chipped COCO dataset, train/val split by scene")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output folder")
    p.add_argument("-n", "--scenes", type=int, default=20)
    p.add_argument("--scene-size", type=int, default=1024)
    p.add_argument("--chip-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--clusters", type=int, help="mining clusters per scene (default: random)")
    p.add_argument(
        "--keep-negatives", type=float, default=1.0, help="fraction of site-free chips kept"
    )
    p.set_defaults(handler=_dataset)

    p = sub.add_parser("tile", help="a full-size tile written block by block (benchmarks)")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output .tif")
    p.add_argument("--size", type=int, default=10980)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clusters", type=int, help="mining clusters (default: 3 to 8)")
    p.set_defaults(handler=_tile)


def _scene(args: argparse.Namespace) -> int:
    f = write_scene(args.output, args.seed, args.size, args.size, clusters=args.clusters)
    print(f"wrote {f.tile} ({f.instances} instances), {f.annotations}, {f.truth}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    path = generate_dataset(
        args.output,
        args.scenes,
        args.scene_size,
        args.chip_size,
        args.seed,
        args.val_fraction,
        keep_negatives=args.keep_negatives,
        progress=not args.quiet,
        clusters=args.clusters,
    )
    print(f"wrote {path}")
    return 0


def _tile(args: argparse.Namespace) -> int:
    f = write_large_tile(args.output, args.size, args.seed, args.clusters, progress=not args.quiet)
    print(f"wrote {f.tile} ({f.instances} instances), {f.truth}")
    return 0
