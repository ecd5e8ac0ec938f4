"""Digital numbers to physical units: Sentinel-2 reflectance with the processing-baseline offset.

Since processing baseline 04.00 (products from 2022-01-25 on), Sentinel-2 L1C and L2A DNs carry an
offset: reflectance = (DN + RADIO_ADD_OFFSET|BOA_ADD_OFFSET) / QUANTIFICATION_VALUE, with
offset -1000 and quantification 10000 (ESA, "Sentinel-2 Products Specification Document",
S2-PDGS-TAS-DI-PSD v14.9, and the L2A MTD_MSIL2A.xml BOA_ADD_OFFSET fields). Earlier baselines
(e.g. 02.14) have none.
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np

QUANTIFICATION = 10000.0
OFFSET_BASELINE = (4, 0)  # first baseline with the -1000 DN offset
OFFSET_START = date(2022, 1, 25)  # its start date, used only when no baseline is recorded
BASELINE_OFFSET_DN = -1000.0


def parse_baseline(text: str | None) -> tuple[int, int] | None:
    """'04.00', 'N0400', 'GS2A_..._N02.14' or a SAFE product URI -> (4, 0)."""
    if not text:
        return None
    m = re.search(r"(\d{2})\.(\d{2})", text) or re.search(r"N(\d{2})(\d{2})", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def dn_offset(baseline: str | None, acquired: date | None = None) -> float:
    """The additive DN offset of a Sentinel-2 product (0 or -1000)."""
    parsed = parse_baseline(baseline)
    if parsed is not None:
        return BASELINE_OFFSET_DN if parsed >= OFFSET_BASELINE else 0.0
    if acquired is not None and acquired >= OFFSET_START:
        return BASELINE_OFFSET_DN
    return 0.0


def dn_to_reflectance(dn: np.ndarray, offset_dn: float = 0.0) -> np.ndarray:
    """uint16 DN -> float32 reflectance; the caller masks nodata (DN 0) separately."""
    return (dn.astype(np.float32) + np.float32(offset_dn)) / np.float32(QUANTIFICATION)


def reflectance_to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance -> uint16 DN in the offset-free convention (baseline < 04.00), 1 = minimum."""
    return np.clip(np.rint(refl * QUANTIFICATION), 1, 65535).astype(np.uint16)
