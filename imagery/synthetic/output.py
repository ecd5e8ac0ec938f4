"""Write synthetic scenes to disk: one scene, a chipped COCO dataset, or a full-size tile.

Tiles use the project's stacked format (``imagery.tiles``); truth goes out as COCO
(``imagery.coco``) and as EPSG:4326 GeoJSON (``imagery.geometry``), both exact pixel outlines of
what was painted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from imagery import coco, feedback
from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import feature_collection
from imagery.scene import Grid
from imagery.synthetic.layout import make_plan
from imagery.synthetic.render import labels, render
from imagery.synthetic.scene import (
    MIN_SITE_PX,
    SENSOR_BY_LEVEL,
    extract_instances,
    generate_scene,
    scene_metadata,
    truth_features,
)
from imagery.synthetic.spectra import BANDS, band_indices
from imagery.tiles import TileWriter, write_tile
from imagery.windows import WindowSpec, iter_windows

ATTRIBUTION = (
    "Synthetic Sentinel-2-like imagery by asmspotter's generator; pit and pond outlines derived "
    "from the asm-map West-Africa ASM polygons (gate-ens-asm, CC BY 4.0)"
)


@dataclass
class SceneFiles:
    scene_id: str
    tile: Path
    annotations: Path | None  # COCO JSON (None for a large tile: GeoJSON truth only)
    truth: Path
    instances: int


def _check(**sizes: int) -> None:
    for name, value in sizes.items():
        if value <= 0:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"{name} must be positive, got {value}")


def write_scene(
    out_dir: str | Path, seed: int, height: int = 1024, width: int = 1024, **options: Any
) -> SceneFiles:
    """Generate one scene and write ``<scene_id>.tif``, ``.json`` (COCO) and ``.geojson``."""
    _check(height=height, width=width)
    out = Path(out_dir)
    scene = generate_scene(seed, height, width, **options)
    tile = out / f"{scene.scene_id}.tif"
    write_tile(
        tile, scene.image, scene.grid, scene.bands, scene.sensor, scene.scene_id, scene.datetime
    )
    image = coco.image_entry(
        1,
        tile.name,
        width,
        height,
        scene.grid.crs.to_string(),
        scene.grid.transform,
        scene_id=scene.scene_id,
        datetime=scene.datetime,
    )
    doc = coco.dataset([image], scene.coco_annotations(1), attribution=ATTRIBUTION, seed=seed)
    ann = out / f"{scene.scene_id}.json"
    ann.write_text(json.dumps(doc))
    truth = out / f"{scene.scene_id}.geojson"
    truth.write_text(json.dumps(feature_collection(scene.truth_features())))
    return SceneFiles(scene.scene_id, tile, ann, truth, len(scene.instances))


def generate_dataset(
    out_dir: str | Path,
    n_scenes: int,
    scene_size: int = 1024,
    chip_size: int = 256,
    seed: int = 0,
    val_fraction: float = 0.2,
    min_valid: float = 0.5,
    keep_negatives: float = 1.0,
    progress: bool = False,
    bands: tuple[str, ...] = BANDS,
    **options: Any,
) -> Path:
    """A COCO dataset folder (docs/design.md): chips as stacked GeoTIFFs under ``chips/``,
    ``annotations.json`` (train/val split by scene; negative chips kept) and ``truth.geojson``.

    Chips with less than ``min_valid`` valid pixels (swath edge) are skipped; a seeded
    ``keep_negatives`` fraction of the chips without sites is kept (1.0 = all, per the design).
    ``bands``: the chips' bands, in this order (e.g. ``("B02", "B03", "B04")``). ``options`` go
    to ``generate_scene`` (e.g. ``clusters``, ``level="l1c"``, ``palette="amazon"``; the chips'
    sensor tag follows the level). Returns the JSON path.
    """
    _check(n_scenes=n_scenes, scene_size=scene_size, chip_size=chip_size)
    band_idx = band_indices(bands)
    if not 0 <= keep_negatives <= 1:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"keep_negatives must be in [0, 1]: {keep_negatives}"
        )
    if not 0 <= val_fraction < 1:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"val_fraction must be in [0, 1): {val_fraction}"
        )
    out = Path(out_dir)
    (out / "chips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 1])
    n_val = min(n_scenes - 1, max(1, round(n_scenes * val_fraction))) if val_fraction > 0 else 0
    val = set(rng.choice(n_scenes, n_val, replace=False).tolist()) if n_val > 0 else set()
    images: list[dict] = []
    annotations: list[dict] = []
    truth: list[dict] = []
    spec = WindowSpec(chip_size, 0)
    for i in feedback.bar(range(n_scenes), desc="scenes", enabled=progress):
        scene_seed = seed * 100_003 + i
        scene = generate_scene(scene_seed, scene_size, scene_size, **options)
        split = "val" if i in val else "train"
        truth += scene.truth_features(split=split)
        for win in iter_windows(scene_size, scene_size, spec):
            r, c, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
            chip = scene.image[band_idx, r : r + h, c : c + w]
            if np.isfinite(chip).all(axis=0).mean() < min_valid:
                continue
            chip_labels = scene.labels[r : r + h, c : c + w]
            masks = [(inst, chip_labels == inst.id) for inst in scene.instances]
            masks = [(inst, m) for inst, m in masks if m.sum() >= MIN_SITE_PX]
            if not masks and rng.random() >= keep_negatives:
                continue
            image_id = len(images) + 1
            name = f"chips/{scene.scene_id}_r{r:05d}_c{c:05d}.tif"
            grid = Grid(scene.grid.crs, scene.grid.window_transform(win), w, h)
            write_tile(
                out / name,
                chip,
                grid,
                bands,
                scene.sensor,
                scene.scene_id,
                scene.datetime,
                cog=False,
            )
            images.append(
                coco.image_entry(
                    image_id,
                    name,
                    w,
                    h,
                    scene.grid.crs.to_string(),
                    grid.transform,
                    scene_id=scene.scene_id,
                    datetime=scene.datetime,
                    split=split,
                )
            )
            for inst, mask in masks:
                annotations.append(
                    coco.annotation(
                        len(annotations) + 1, image_id, mask, inst.category, instance=inst.id
                    )
                )
    doc = coco.dataset(
        images,
        annotations,
        attribution=ATTRIBUTION,
        seed=seed,
        scene_size=scene_size,
        chip_size=chip_size,
        generator="imagery.synthetic",
        bands=list(bands),
        level=options.get("level", "l2a"),
        palette=options.get("palette", "legacy"),
    )
    path = out / "annotations.json"
    path.write_text(json.dumps(doc))
    (out / "truth.geojson").write_text(json.dumps(feature_collection(truth)))
    return path


def write_large_tile(
    path: str | Path,
    size: int = 10980,
    seed: int = 0,
    clusters: int | None = None,
    block: int = 1024,
    cog: bool = True,
    progress: bool = True,
    level: str = "l2a",
    palette: str = "legacy",
) -> SceneFiles:
    """A full-size, mostly forested tile with a few mining clusters along rivers, clouds and a
    nodata swath edge, rendered and written block by block (memory stays ~ a few blocks).

    Writes the tile plus ``<stem>.geojson`` (EPSG:4326 truth) next to it.
    """
    _check(size=size, block=block)
    path = Path(path)
    if clusters is None:
        clusters = int(np.random.default_rng([seed, 3]).integers(3, 9))
    plan = make_plan(
        seed,
        size,
        size,
        clusters,
        cloud_probability=1.0,
        nodata_probability=1.0,
        level=level,
        palette=palette,
    )
    crs, transform, iso, scene_id = scene_metadata(seed)
    grid = Grid(crs, transform, size, size)
    windows = list(iter_windows(size, size, WindowSpec(block, 0)))
    sensor = SENSOR_BY_LEVEL[level]
    with TileWriter(path, grid, BANDS, sensor, scene_id, iso, cog=cog) as writer:
        for win in feedback.bar(windows, desc="blocks", unit="block", enabled=progress):
            r, c, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
            writer.write(Window(c, r, w, h), render(plan, r, c, h, w).image)
    # Truth: each site's own window, re-rendered (labels only), so later paint still wins.
    instances = []
    for site in plan.sites:
        x0, y0, x1, y1 = site.geom.bounds
        r0, c0 = max(int(y0) - 2, 0), max(int(x0) - 2, 0)
        r1, c1 = min(int(y1) + 3, size), min(int(x1) + 3, size)
        if r1 > r0 and c1 > c0:
            lab = labels(plan, r0, c0, r1 - r0, c1 - c0)
            instances += [i for i in extract_instances(plan, lab, r0, c0) if i.id == site.id]
    truth = path.with_suffix(".geojson")
    truth.write_text(json.dumps(feature_collection(truth_features(instances, grid, scene_id))))
    return SceneFiles(scene_id, path, None, truth, len(instances))
