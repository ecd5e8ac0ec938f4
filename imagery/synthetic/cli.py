"""``asmspotter generate scene|dataset|tile|chips``: synthetic Sentinel-2-like data and labels."""

from __future__ import annotations

import argparse

from imagery.synthetic.layout import LEVELS
from imagery.synthetic.output import generate_dataset, write_large_tile, write_scene
from imagery.synthetic.spectra import BANDS, PALETTES

LEVEL_HELP = "l2a: surface reflectance; l1c: top of atmosphere (calibrated haze)"
PALETTE_HELP = "legacy: cited spectra; amazon: colours/textures fitted to real Amazon chips"


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
    _look(p)
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
    p.add_argument(
        "--bands",
        type=_bands,
        default=",".join(BANDS),
        help="comma-separated chip bands, e.g. B02,B03,B04",
    )
    _look(p)
    p.set_defaults(handler=_dataset)

    p = sub.add_parser(
        "chips",
        help="48 px context chips with chip labels for a chip classifier (.npz)",
        description="N chips of 48 x 48 px in the real gallery's layout: images float32 "
        "[N,3,48,48] reflectance B02 B03 B04, labels (1 = a mining site near the centre, 0 = "
        "none, look-alikes included), kinds (what each chip shows).",
    )
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output .npz")
    p.add_argument("-n", "--chips", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--positive-fraction", type=float, default=0.5)
    _look(p, level="l1c", palette="amazon")
    p.set_defaults(handler=_chips)

    p = sub.add_parser("tile", help="a full-size tile written block by block (benchmarks)")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, help="output .tif")
    p.add_argument("--size", type=int, default=10980)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clusters", type=int, help="mining clusters (default: 3 to 8)")
    _look(p)
    p.set_defaults(handler=_tile)


def _look(p: argparse.ArgumentParser, level: str = "l2a", palette: str = "legacy") -> None:
    p.add_argument("--level", choices=LEVELS, default=level, help=LEVEL_HELP)
    p.add_argument("--palette", choices=PALETTES, default=palette, help=PALETTE_HELP)


def _look_of(args: argparse.Namespace) -> dict[str, str]:
    return {"level": args.level, "palette": args.palette}


def _bands(text: str) -> tuple[str, ...]:
    from imagery.errors import AsmSpotterError
    from imagery.synthetic.spectra import band_indices

    bands = tuple(b.strip().upper() for b in text.split(",") if b.strip())
    try:
        band_indices(bands)
    except AsmSpotterError as exc:  # a usage error: one line, exit 2
        raise argparse.ArgumentTypeError(str(exc)) from None
    return bands


def _scene(args: argparse.Namespace) -> int:
    f = write_scene(
        args.output,
        args.seed,
        args.size,
        args.size,
        clusters=args.clusters,
        **_look_of(args),
    )
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
        bands=args.bands,
        clusters=args.clusters,
        **_look_of(args),
    )
    print(f"wrote {path}")
    return 0


def _tile(args: argparse.Namespace) -> int:
    f = write_large_tile(
        args.output,
        args.size,
        args.seed,
        args.clusters,
        progress=not args.quiet,
        **_look_of(args),
    )
    print(f"wrote {f.tile} ({f.instances} instances), {f.truth}")
    return 0


def _chips(args: argparse.Namespace) -> int:
    from imagery.synthetic.chips import write_context_chips

    path = write_context_chips(
        args.output,
        args.chips,
        args.seed,
        args.positive_fraction,
        **_look_of(args),
    )
    print(f"wrote {path}")
    return 0
