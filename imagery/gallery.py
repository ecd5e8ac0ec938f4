"""Real Sentinel-2 chips of the Amazon: the Amazon Mining Watch training gallery (Earth Genome).

The gallery (``../shared/data/amazon-mining-watch-gallery``, CC BY 4.0, cite Earth Genome) is 62
PNG mosaics of 48 x 48 px chips (one set of 32 px) laid row-major; every chip of a mosaic carries
the label of its source set. A chip was rendered as
``uint8(clip(TOA[B04, B03, B02] / 0.3, 0, 1) * 255)``, so top-of-atmosphere reflectance comes
back as ``value / 255 * 0.3`` (saturated at 0.3). Pure black
pixels are nodata (masked composites; TOA is never 0 over land or water).

The split is fixed and by *group* (source set and period: both cloud thresholds of one set and
period go together), never chip by chip; ``TEST_SETS`` is the benchmark's test split that no
training or tuning touches, ``VAL_SETS`` the split used for early stopping, calibration and the
default threshold. Everything else with a label is training data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagery.errors import ImageryError, Reason

GALLERY_BANDS = ("B02", "B03", "B04")  # array order of ``GalleryChips.images``
CHIP_PX = 48
TOA_SATURATION = 0.3  # reflectance rendered as 255
ATTRIBUTION = (
    "Amazon Mining Watch training gallery, Earth Genome "
    "(github.com/earthrise-media/mining-detector), CC BY 4.0; "
    "contains modified Copernicus Sentinel data"
)

_NAME = re.compile(
    r"^(?P<set>.+?)_S2L1C_clear(?P<clear>[0-9.]+)_(?P<start>\d{4}-\d{2}-\d{2})_(?P<end>\d{4}-\d{2}-\d{2})$"
)
_PREVIEW = re.compile(r"^(?P<set>.+?)_rgb_preview$")

# Negative categories of the benchmark, by a word in the source set's name (first match wins).
NEGATIVE_CATEGORIES = (
    ("riverbank", "riverbank"),
    ("aquaculture", "aquaculture"),
    ("landslide", "landslide"),
    ("industrial", "industrial"),
    ("cloud_remnant", "cloud_remnant"),
    ("oxbow", "oxbow"),
    ("random_negatives", "forest"),
)
OTHER_NEGATIVE = "mined_negative"  # hard negatives mined from earlier models' false alarms
CATEGORIES = tuple(c for _, c in NEGATIVE_CATEGORIES) + (OTHER_NEGATIVE, "mine", "unlabelled")

# Fixed split by source set (all its periods and cloud thresholds). Chosen once so that the test
# split holds every negative category the gallery has (it has no oxbow mosaic), positives of
# 2019, 2023 and 2024 and dredges; the validation split holds other sets of both labels.
TEST_SETS = frozenset(
    {
        "bolivar_2020_thresh_0.8_sumbsample_5_positives_cleaned",
        "v3.3_2023_positives",
        "ACAexpanded_amazon_positives2025-08",
        "dredge_mining_positives2025-08",
        "riverbank_negatives_v2025-08",
        "aquaculture-faziendas-negatives2025-08",
        "landslide_negatives2025-08",
        "industrial_negatives2025-08",
        "v4.10_Q125_cloud_remnant_negatives",
        "random_negatives10k_2025-08",
        "v3.1_2023_negatives",
        "ACAexpanded_amazon_negatives2025-08",
    }
)
VAL_SETS = frozenset(
    {
        "v0.5-0.8-0.9ensemble_2023_positives",
        "amazonas_2020_thresh_0.8_sumbsample_3_positives",
        "v3.6_2023_positives",
        "riverbank_negatives_bolivia_v2025-08",
        "v2.6_amazon_thresh_0.8_negatives",
        "v3.4_2023_negatives",
        "v0.4-6SSL4EO-MLP_bolivia_2023_negatives",
        "v2.1.1_bolivar_negatives",
        "amazonas_2020_thresh_0.5_2_negatives",
    }
)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Mosaic:
    """One mosaic file and what its name says."""

    path: Path
    source_set: str
    clear: float | None  # the composite's clear-sky threshold (None for previews)
    start: str | None
    end: str | None
    chip_px: int

    @property
    def label(self) -> int:
        """1 mine, 0 not a mine, -1 unlabelled (sets whose name carries no label)."""
        name = self.source_set.lower()
        if "positives" in name:
            return 1
        if "negatives" in name:
            return 0
        return -1

    @property
    def category(self) -> str:
        if self.label == 1:
            return "mine"
        if self.label == -1:
            return "unlabelled"
        name = self.source_set.lower()
        for word, category in NEGATIVE_CATEGORIES:
            if word in name:
                return category
        return OTHER_NEGATIVE

    @property
    def group(self) -> str:
        """The split unit: the source set and its period."""
        return f"{self.source_set}:{self.start or '?'}:{self.end or '?'}"

    @property
    def split(self) -> str:
        if self.label == -1:
            return "unlabelled"
        if self.source_set in TEST_SETS:
            return "test"
        if self.source_set in VAL_SETS:
            return "val"
        return "train"


@dataclass
class GalleryChips:
    """All chips, one row per chip. ``images`` float32 [N,3,48,48] TOA reflectance in
    ``GALLERY_BANDS`` order, NaN = nodata (32 px chips are centred and padded with NaN)."""

    images: np.ndarray
    labels: np.ndarray  # int8: 1 mine, 0 not a mine, -1 unlabelled
    categories: np.ndarray  # str
    mosaics: np.ndarray  # str: the mosaic's file stem
    groups: np.ndarray  # str: source set and period
    splits: np.ndarray  # str: train | val | test | unlabelled
    indices: np.ndarray  # int: the chip's cell in its mosaic (row-major)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> GalleryChips:
        return GalleryChips(
            self.images[keep],
            self.labels[keep],
            self.categories[keep],
            self.mosaics[keep],
            self.groups[keep],
            self.splits[keep],
            self.indices[keep],
        )

    def split(self, name: str) -> GalleryChips:
        return self.subset(self.splits == name)

    def sample(self, n: int, seed: int = 0) -> GalleryChips:
        """A fixed random part of ``n`` chips (all when ``n`` is 0 or not smaller), in order."""
        if not n or n >= len(self):
            return self
        keep = np.zeros(len(self), bool)
        keep[np.random.default_rng(seed).permutation(len(self))[:n]] = True
        return self.subset(keep)


def default_root() -> Path:
    """``../shared/data/amazon-mining-watch-gallery`` beside the repository."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-mining-watch-gallery"


def parse_mosaic(path: Path) -> Mosaic:
    stem = path.stem
    chip_px = 32 if stem.startswith("GeoCompass2023-negatives") else CHIP_PX
    match = _NAME.match(stem)
    if match:
        return Mosaic(
            path,
            match["set"],
            float(match["clear"]),
            match["start"],
            match["end"],
            chip_px,
        )
    match = _PREVIEW.match(stem)
    if match:
        return Mosaic(path, match["set"], None, None, None, chip_px)
    raise ImageryError(
        Reason.INVALID_ARGUMENT,
        "not a gallery mosaic name "
        "(<set>_S2L1C_clear<t>_<start>_<end>.png or <set>_rgb_preview.png)",
        str(path),
    )


def find_mosaics(root: str | Path | None = None) -> list[Mosaic]:
    root = Path(root) if root is not None else default_root()
    folder = root / "mosaics" if (root / "mosaics").is_dir() else root
    paths = sorted(folder.rglob("*.png"))
    if not paths:
        raise ImageryError(
            Reason.FILE_NOT_FOUND,
            "no gallery mosaics (*.png) here; expected ../shared/data/amazon-mining-watch-gallery",
            str(root),
        )
    return [parse_mosaic(p) for p in paths]


def read_png_rgb(path: Path) -> np.ndarray:
    """uint8 [H,W,3] of a PNG, read with GDAL (rasterio): no imaging library needed."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                data = src.read()
    except RasterioError as exc:
        raise ImageryError(Reason.NOT_A_GEOTIFF, f"not a readable PNG ({exc})", str(path)) from exc
    if data.shape[0] < 3 or data.dtype != np.uint8:
        raise ImageryError(
            Reason.BAND_MISMATCH,
            f"expected an 8-bit RGB PNG, got {data.shape[0]} band(s) of {data.dtype}",
            str(path),
        )
    return np.moveaxis(data[:3], 0, -1)


def cut_chips(rgb: np.ndarray, chip_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a mosaic into its chips: uint8 [n,chip,chip,3] and their row-major cell indices.
    Cells after the last chip are black; a wholly black cell is no chip (nothing was rendered)."""
    rows, cols = rgb.shape[0] // chip_px, rgb.shape[1] // chip_px
    cells = (
        rgb[: rows * chip_px, : cols * chip_px]
        .reshape(rows, chip_px, cols, chip_px, 3)
        .transpose(0, 2, 1, 3, 4)
        .reshape(rows * cols, chip_px, chip_px, 3)
    )
    filled = np.flatnonzero(cells.reshape(len(cells), -1).max(axis=1) > 0)
    n = int(filled[-1]) + 1 if filled.size else 0
    expected_cols = math.ceil(math.sqrt(n)) if n else 0
    if n and expected_cols != cols:
        raise ImageryError(
            Reason.INVALID_ARGUMENT,
            f"{n} chips should be laid in {expected_cols} columns, the mosaic has {cols}",
        )
    return cells[filled], filled


def to_reflectance(chips: np.ndarray) -> np.ndarray:
    """uint8 [n,h,w,3] rendered R,G,B -> float32 [n,3,h,w] TOA reflectance B02,B03,B04, NaN where
    the pixel is black (nodata)."""
    toa = chips.astype(np.float32) / 255.0 * TOA_SATURATION
    toa = np.moveaxis(toa[..., ::-1], -1, 1)  # R,G,B -> B02 (blue), B03 (green), B04 (red)
    nodata = (chips == 0).all(axis=-1)[:, None]
    return np.where(nodata, np.nan, toa).astype(np.float32)


def to_rendered(images: np.ndarray) -> np.ndarray:
    """``to_reflectance`` undone: float32 [n,3,h,w] TOA reflectance B02,B03,B04 (NaN = nodata)
    -> uint8 [n,h,w,3] R,G,B as the mosaics render it (nodata black). Exact for the gallery's own
    chips; other reflectance is rounded to the rendering's levels and saturates at 0.3."""
    rgb = np.moveaxis(np.asarray(images, np.float32)[:, ::-1], 1, -1) / TOA_SATURATION * 255.0
    return np.round(np.clip(np.nan_to_num(rgb, nan=0.0), 0, 255)).astype(np.uint8)


def load_gallery(root: str | Path | None = None) -> GalleryChips:
    """Every chip of every mosaic, in mosaic-name order."""
    parts: dict[str, list] = {k: [] for k in ("img", "lab", "cat", "mos", "grp", "spl", "idx")}
    for mosaic in find_mosaics(root):
        chips, idx = cut_chips(read_png_rgb(mosaic.path), mosaic.chip_px)
        refl = to_reflectance(chips)
        if mosaic.chip_px != CHIP_PX:  # centre smaller chips on a nodata 48 px canvas
            pad = np.full((len(refl), 3, CHIP_PX, CHIP_PX), np.nan, np.float32)
            o = (CHIP_PX - mosaic.chip_px) // 2
            pad[:, :, o : o + mosaic.chip_px, o : o + mosaic.chip_px] = refl
            refl = pad
        n = len(refl)
        parts["img"].append(refl)
        parts["lab"].append(np.full(n, mosaic.label, np.int8))
        parts["cat"].append(np.full(n, mosaic.category, object))
        parts["mos"].append(np.full(n, mosaic.path.stem, object))
        parts["grp"].append(np.full(n, mosaic.group, object))
        parts["spl"].append(np.full(n, mosaic.split, object))
        parts["idx"].append(idx)
    return GalleryChips(
        images=np.concatenate(parts["img"]),
        labels=np.concatenate(parts["lab"]),
        categories=np.concatenate(parts["cat"]).astype(str),
        mosaics=np.concatenate(parts["mos"]).astype(str),
        groups=np.concatenate(parts["grp"]).astype(str),
        splits=np.concatenate(parts["spl"]).astype(str),
        indices=np.concatenate(parts["idx"]),
    )


# A nominal grid for the chips' GeoTIFFs: the gallery keeps no coordinates, so each chip is laid
# on its own 10 m cell of UTM zone 20S (EPSG:32720, central Amazon) and marked not georeferenced
# (COCO ``georeferenced: false``, tag ``ASMSPOTTER_GEOREFERENCED=false``). Only the pixel size is
# real; never map these positions.
NOMINAL_CRS = "EPSG:32720"
GEOREFERENCED_TAG = "ASMSPOTTER_GEOREFERENCED"


def nominal_transform(number: int) -> tuple[float, ...]:
    x0 = 300000.0 + 1000.0 * (number % 500)
    y0 = 9000000.0 - 1000.0 * (number // 500)
    return (10.0, 0.0, x0, 0.0, -10.0, y0)


def write_chip(out_dir: Path, chips: GalleryChips, row: int, image_id: int, split: str) -> dict:
    """Chip ``row`` as the dataset's 3-band stacked GeoTIFF (``sentinel2-l1c`` B02 B03 B04 on
    the nominal grid cell ``row``, marked not georeferenced) under ``out_dir``; returns its COCO
    image entry (chip label, category, mosaic, group and cell as image fields)."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from imagery import coco
    from imagery.scene import Grid
    from imagery.tiles import write_tile

    mosaic = str(chips.mosaics[row])
    name = f"chips/{mosaic}/{int(chips.indices[row]):04d}.tif"
    transform = Affine(*nominal_transform(row))
    write_tile(
        Path(out_dir) / name,
        chips.images[row],
        Grid(CRS.from_string(NOMINAL_CRS), transform, CHIP_PX, CHIP_PX),
        GALLERY_BANDS,
        sensor="sentinel2-l1c",
        scene_id=f"{mosaic}/{int(chips.indices[row])}",
        cog=False,
        extra_tags={GEOREFERENCED_TAG: "false"},
    )
    return coco.image_entry(
        image_id,
        name,
        CHIP_PX,
        CHIP_PX,
        NOMINAL_CRS,
        transform,
        split=split,
        label=int(chips.labels[row]),
        category=str(chips.categories[row]),
        mosaic=mosaic,
        group=str(chips.groups[row]),
        cell=int(chips.indices[row]),
        georeferenced=False,
    )


def import_gallery(
    out_dir: str | Path,
    root: str | Path | None = None,
    splits: tuple[str, ...] = (*SPLITS, "unlabelled"),
    progress: bool = True,
) -> dict[str, int]:
    """Write the gallery as the project's dataset: one 3-band stacked GeoTIFF per chip
    (``sentinel2-l1c`` B02 B03 B04, TOA reflectance x 10000, nodata 0) and ``annotations.json``
    (COCO; no instances: chip labels are image fields ``label``, ``category``, ``mosaic``,
    ``group``, ``split``). Returns the number of chips per split."""
    import json

    from tqdm import tqdm

    from imagery import coco

    out = Path(out_dir)
    chips = load_gallery(root)
    keep = np.isin(chips.splits, list(splits))
    chips = chips.subset(keep)
    images: list[dict] = []
    counts: dict[str, int] = {}
    rows = tqdm(range(len(chips)), desc="chips", unit="chip", disable=not progress)
    for i in rows:
        split = str(chips.splits[i])
        counts[split] = counts.get(split, 0) + 1
        images.append(write_chip(out, chips, i, i + 1, split))
    data = coco.dataset(images, [], source=ATTRIBUTION, weak_labels="image field 'label'")
    (out / "annotations.json").write_text(json.dumps(data))
    return counts
