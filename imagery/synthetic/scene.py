"""In-memory synthetic scenes: ``generate_scene(seed, height, width) -> SyntheticScene``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine

from imagery import coco
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84, feature, mask_to_geometry, reproject
from imagery.scene import Grid
from imagery.synthetic.layout import LANDCOVER, Plan, make_plan
from imagery.synthetic.render import render
from imagery.synthetic.spectra import BANDS

SENSOR = "sentinel2-l2a"
SENSOR_BY_LEVEL = {"l2a": "sentinel2-l2a", "l1c": "sentinel2-l1c"}
MIN_SITE_PX = 4
MAX_IN_MEMORY_PX = 8192 * 8192
# Tropical UTM zones with artisanal gold mining: Amazon (Peru, Brazil, Guianas, Colombia,
# Venezuela), West and Central Africa (Guinea, Ghana, Cameroon, Gabon), Borneo, Sumatra,
# Papua New Guinea.
UTM_EPSG = (
    32618,
    32619,
    32620,
    32621,
    32622,
    32718,
    32719,
    32720,
    32721,
    32722,
    32628,
    32629,
    32630,
    32631,
    32632,
    32633,
    32732,
    32733,
    32647,
    32649,
    32650,
    32748,
    32749,
    32755,
)


@dataclass
class Instance:
    """One labelled pit or pond; ``mask`` covers rows row0.. and cols col0.. of the scene."""

    id: int
    category: str
    cluster: int
    row0: int
    col0: int
    mask: np.ndarray  # bool [h, w]

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    def full_mask(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        h, w = self.mask.shape
        out[self.row0 : self.row0 + h, self.col0 : self.col0 + w] = self.mask
        return out


@dataclass
class SyntheticScene:
    image: np.ndarray  # float32 [6, H, W] reflectance, NaN = nodata
    bands: tuple[str, ...]
    grid: Grid
    scene_id: str
    datetime: str
    instances: list[Instance]
    labels: np.ndarray  # int32 [H, W]: instance id, 0 = background (truth raster)
    landcover: np.ndarray  # uint8 [H, W]: index into LANDCOVER (look-alikes included)
    cloud: np.ndarray  # float32 [H, W] cloud opacity
    plan: Plan

    @property
    def sensor(self) -> str:
        """``sentinel2-l2a`` (surface reflectance) or ``sentinel2-l1c`` (top of atmosphere)."""
        return SENSOR_BY_LEVEL[self.plan.level]

    @property
    def landcover_names(self) -> tuple[str, ...]:
        return LANDCOVER

    def instance_mask(self, inst: Instance) -> np.ndarray:
        return inst.full_mask(self.grid.height, self.grid.width)

    def instance_geometry(self, inst: Instance, crs: Any = None) -> Any:
        """The exact pixel outline (no simplification) in the scene CRS or ``crs``."""
        return instance_geometry(inst, self.grid, crs)

    def truth_features(self, **properties: Any) -> list[dict[str, Any]]:
        """GeoJSON features of the truth in EPSG:4326."""
        return truth_features(self.instances, self.grid, self.scene_id, **properties)

    def coco_annotations(self, image_id: int, first_ann_id: int = 1) -> list[dict[str, Any]]:
        return [
            coco.annotation(
                first_ann_id + i,
                image_id,
                self.instance_mask(inst),
                inst.category,
                instance=inst.id,
            )
            for i, inst in enumerate(self.instances)
        ]


def instance_geometry(inst: Instance, grid: Grid, crs: Any = None) -> Any:
    """An instance's exact pixel outline (no simplification) in the grid's CRS or ``crs``."""
    transform = grid.transform @ Affine.translation(inst.col0, inst.row0)
    geom = mask_to_geometry(inst.mask, transform, simplify_px=0)
    return geom if crs is None else reproject(geom, grid.crs, crs)


def truth_features(
    instances: list[Instance], grid: Grid, scene_id: str, **properties: Any
) -> list[dict[str, Any]]:
    """GeoJSON features (EPSG:4326) of the instances, with category, ids and pixel area."""
    return [
        feature(
            instance_geometry(inst, grid, WGS84),
            {
                "scene_id": scene_id,
                "instance": inst.id,
                "category": inst.category,
                "cluster": inst.cluster,
                "area_px": inst.area_px,
                **properties,
            },
        )
        for inst in instances
    ]


def scene_metadata(seed: int) -> tuple[CRS, Affine, str, str]:
    """A tropical UTM zone, an origin inside it, an acquisition time (ISO 8601) and a scene id."""
    rng = np.random.default_rng([seed, 97])
    epsg = int(rng.choice(UTM_EPSG))
    north = epsg < 32700
    x0 = float(rng.integers(20_000, 75_000)) * 10
    y0 = float(rng.integers(1_000, 150_000) if north else rng.integers(850_000, 999_000)) * 10
    when = datetime(2017, 1, 1, 10, 30, tzinfo=UTC) + timedelta(
        days=int(rng.integers(0, 365 * 8)), minutes=int(rng.integers(0, 180))
    )
    stamp = when.strftime("%Y%m%dT%H%M%S")
    scene_id = f"SYN_{epsg - (32600 if north else 32700):02d}{'N' if north else 'S'}_{stamp}_{seed}"
    iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return CRS.from_epsg(epsg), Affine(10, 0, x0, 0, -10, y0), iso, scene_id


def generate_scene(
    seed: int,
    height: int = 512,
    width: int = 512,
    clusters: int | None = None,
    cloud_probability: float = 0.35,
    nodata_probability: float = 0.2,
    spread: float = 1.0,
    level: str = "l2a",
    palette: str = "legacy",
) -> SyntheticScene:
    """A whole synthetic scene in memory (up to 8192² px; larger: ``write_large_tile``).
    ``level`` and ``palette``: see ``layout.make_plan``."""
    if height <= 0 or width <= 0 or height * width > MAX_IN_MEMORY_PX:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"scene size {height} x {width} must be positive and at most {MAX_IN_MEMORY_PX} px "
            "in memory; write larger tiles block by block with write_large_tile",
        )
    plan = make_plan(
        seed,
        height,
        width,
        clusters,
        cloud_probability,
        nodata_probability,
        spread,
        level,
        palette,
    )
    crs, transform, iso, scene_id = scene_metadata(seed)
    out = render(plan, 0, 0, height, width)
    instances = extract_instances(plan, out.labels, 0, 0)
    # Relabel the raster so that ids are those of the kept instances only.
    keep = np.zeros(len(plan.sites) + 1, np.int32)
    for inst in instances:
        keep[inst.id] = inst.id
    labels = keep[out.labels]
    return SyntheticScene(
        image=out.image,
        bands=BANDS,
        grid=Grid(crs, transform, width, height),
        scene_id=scene_id,
        datetime=iso,
        instances=instances,
        labels=labels,
        landcover=out.landcover,
        cloud=out.cloud,
        plan=plan,
    )


def extract_instances(plan: Plan, labels: np.ndarray, row0: int, col0: int) -> list[Instance]:
    """Instances whose visible mask in ``labels`` (a window at row0, col0) has >= MIN_SITE_PX."""
    h, w = labels.shape
    found = []
    for site in plan.sites:
        x0, y0, x1, y1 = site.geom.bounds
        r0, c0 = max(int(np.floor(y0)) - 1 - row0, 0), max(int(np.floor(x0)) - 1 - col0, 0)
        r1, c1 = min(int(np.ceil(y1)) + 1 - row0, h), min(int(np.ceil(x1)) + 1 - col0, w)
        if r1 <= r0 or c1 <= c0:
            continue
        mask = labels[r0:r1, c0:c1] == site.id
        if mask.sum() < MIN_SITE_PX:
            continue
        rows, cols = np.nonzero(mask)
        mask = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        found.append(
            Instance(
                site.id,
                site.category,
                site.cluster,
                row0 + r0 + int(rows.min()),
                col0 + c0 + int(cols.min()),
                mask,
            )
        )
    return found
