"""Window prefilter: skip windows that cannot hold an ASM site before the model runs.

A pit or pond is open water or bare, disturbed soil. A window is kept when it holds at least
``min_pixels`` candidate pixels: valid (not nodata), not opaque cloud, and either wet (MNDWI or
NDWI above a threshold) or sparsely vegetated (NDVI below a threshold). Closed forest, thick cloud
and nodata are skipped.

The thresholds keep a margin over what was measured on generated scenes
(``imagery.synthetic``; 12-24 seeds of 1024 px, 369-557 sites, clouds and nodata edges, see
``tests/test_prefilter.py`` and ``benchmarks/bench_full_tile.py``):

- NDVI of labelled site pixels: at most 0.33; every site has >= 4 pixels (or all its pixels)
  below 0.45. Closed forest outside cloud: 0.1st percentile >= 0.53. Threshold 0.45.
- Water: MNDWI > 0 or NDWI > 0 (open water is positive; forest MNDWI 99.9th pct <= -0.08).
- Vegetation under thin cloud or haze has a low NDVI but keeps NIR - red > 0.15; site pixels:
  every site has >= 4 pixels (or all) with NIR - red <= 0.11 (24 seeds, 557 sites).
- Forest under a cloud fringe (cloud alpha ~0.5-0.7) keeps NIR - SWIR(B11) >= ~0.11; site
  pixels: every site has >= 4 pixels (or all) with NIR - B11 <= 0.07 (24 seeds). Threshold 0.10.
  Fringes that pass both tests stay candidates (windows near clouds are kept).
- Opaque cloud: B02 > 0.35 (labelled site pixels under thin cloud: B02 at most 0.30;
  thicker cloud removes them from the truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REQUIRED_BANDS = ("B02", "B03", "B04", "B08", "B11")


@dataclass(frozen=True)
class PrefilterThresholds:
    max_ndvi: float = 0.45  # below: bare soil, tailings, water, settlements
    min_mndwi: float = 0.0  # above: open water (B03 vs B11)
    min_ndwi: float = 0.0  # above: open water (B03 vs B08)
    max_cloud_b02: float = 0.35  # above: opaque cloud, never a candidate
    max_nir_minus_red: float = 0.15  # above: vegetation, also under thin cloud and haze
    max_nir_minus_swir: float = 0.10  # above: vegetation under a cloud fringe
    min_pixels: int = 4  # candidate pixels a window needs to be kept


class WindowPrefilter:
    """Decides per window [C, h, w] (reflectance, NaN = nodata) whether the model must run."""

    def __init__(self, bands: Sequence[str], thresholds: PrefilterThresholds | None = None) -> None:
        missing = [b for b in REQUIRED_BANDS if b not in bands]
        if missing:
            raise ValueError(f"the prefilter needs bands {missing}; the model has {list(bands)}")
        self.index = {b: list(bands).index(b) for b in REQUIRED_BANDS}
        self.t = thresholds or PrefilterThresholds()

    @classmethod
    def for_bands(cls, bands: Sequence[str]) -> WindowPrefilter | None:
        """A prefilter for these bands, or None when they lack the optical bands it needs
        (e.g. Sentinel-1): then every valid window runs."""
        if any(b not in bands for b in REQUIRED_BANDS):
            return None
        return cls(bands)

    def candidates(self, window: np.ndarray) -> np.ndarray:
        """bool [h, w]: pixels that could belong to a pit or pond."""
        i = self.index
        blue, green, red = window[i["B02"]], window[i["B03"]], window[i["B04"]]
        nir, swir = window[i["B08"]], window[i["B11"]]
        t = self.t
        with np.errstate(invalid="ignore", divide="ignore"):
            bare = (nir - red) < t.max_ndvi * (nir + red)  # NDVI < max_ndvi, no division
            wet = (green - swir) > t.min_mndwi * (green + swir)
            wet |= (green - nir) > t.min_ndwi * (green + nir)
            clear = blue <= t.max_cloud_b02  # False for NaN: nodata is never a candidate
            clear &= (nir - red) <= t.max_nir_minus_red
            clear &= (nir - swir) <= t.max_nir_minus_swir
        return clear & (bare | wet)

    def keep(self, window: np.ndarray) -> bool:
        """True when the window holds at least ``min_pixels`` candidate pixels."""
        return int(np.count_nonzero(self.candidates(window))) >= self.t.min_pixels
