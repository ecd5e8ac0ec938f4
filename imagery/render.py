"""Render band stacks as 8-bit pictures: percentile stretch, true colour and false colour views.

Used for labelling chips and monitoring reports. Input is physical units [C,H,W] with NaN = nodata;
output is uint8 [H,W,3] (nodata black), ready for Pillow or cv2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile_stretch(
    values: np.ndarray, low: float = 2.0, high: float = 98.0, per_band: bool = True
) -> np.ndarray:
    """float [C,H,W] -> uint8 [H,W,C]; each band's ``low``..``high`` percentiles map to 0..255."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[None]
    valid = np.isfinite(values)
    out = np.zeros(values.shape, np.uint8)
    groups = [[i] for i in range(values.shape[0])] if per_band else [list(range(values.shape[0]))]
    for idx in groups:
        band, ok = values[idx], valid[idx]
        if not ok.any():
            continue
        lo, hi = np.percentile(band[ok], [low, high])
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        scaled = np.clip((np.nan_to_num(band, nan=lo) - lo) * scale, 0, 255)
        out[idx] = np.where(ok, np.rint(scaled), 0).astype(np.uint8)
    return np.moveaxis(out, 0, -1)


def composite(
    values: np.ndarray,
    bands: Sequence[str],
    view: Sequence[str],
    low: float = 2.0,
    high: float = 98.0,
) -> np.ndarray:
    """Pick the three ``view`` bands (e.g. sensor.rgb_bands) out of a [C,H,W] stack and stretch."""
    missing = [b for b in view if b not in bands]
    if missing:
        raise KeyError(f"bands {missing} not in the stack {list(bands)}")
    idx = [list(bands).index(b) for b in view]
    return percentile_stretch(values[idx], low, high)
