"""Window prefilter: skip windows that cannot hold an ASM site before the model runs.

A pit or pond is open water or bare, disturbed soil. A window is kept when it holds at least
``min_pixels`` candidate pixels that touch another candidate (8-neighbours: lone pixels are
noise). A candidate pixel is valid (not nodata), not opaque cloud, not vegetation, and either
bare (NDVI low and red above blue: soil, tailings, turbid water) or open water (MNDWI or NDWI
positive with a negative NDVI). Closed forest, cloud, cloud fringes over shadowed forest and
nodata are skipped.

Thresholds, measured on generated scenes (``imagery.synthetic``; 30-60 seeds of 1024 px with
clouds and nodata edges, and the 10980 px benchmark tile; ``benchmarks/bench_prefilter.py``,
``tests/test_prefilter.py``):

- Vegetation: NDVI >= 0.45, or NIR - red > 0.15 (also under thin cloud and haze), or
  NIR - B11 > 0.10 (forest under a cloud fringe). Every site keeps >= 4 pixels (or all) below
  each; closed forest outside cloud has NDVI >= 0.53 at its 0.1st percentile.
- Bare needs red - blue > 0.005: soils, tailings and sediment are red (site candidates: 1st
  percentile +0.010), while thin cloud over forest or its shadow is grey or bluish (99th
  percentile -0.000; clouds are white, shadows are lit by blue skylight).
- Water needs NDVI < 0: shadowed forest under a thin cloud reaches MNDWI > 0 with NDVI ~0.19,
  open water (clear, black or sediment-laden) has a negative NDVI.
- Opaque cloud: B02 > 0.35 (labelled site pixels under thin cloud: B02 at most 0.30; thicker
  cloud removes them from the truth).
- Lone candidate pixels are sensor noise on cloud fringes: requiring a candidate neighbour took
  the benchmark tile from 665 to 274 kept windows (all remaining forest-only windows gone);
  every site keeps >= 4 grouped pixels (or all), 2 of 1863 excepted (below).

The same test applies per detection (``Predictor(site_test=True)``): a site needs
``min_pixels`` grouped candidate pixels under its mask. It drops the model's false alarms on
clouds and forest, and since a window with fewer candidates cannot yield a site, skipping it
cannot change the result: the optimised path returns the plain path's sites by construction.

On the 10980 px benchmark tile (30 % cloud) these rules keep 274 of 3082 valid 256 px windows
(``bench_prefilter.py``, rendered floats; ``bench_full_tile.py`` reads the uint16 tile: 275)
(the first rules, without red - blue, the water NDVI and the grouping, kept 2989), every window
holding a site among them. ``benchmarks/bench_prefilter.py``, 60 scenes, 1863 sites: no window
holding a site skipped; two sites have fewer than 4 candidate pixels, a 4 px pond (0 px) and a
5 px pit (3 px) under cloud of opacity 0.3-0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REQUIRED_BANDS = ("B02", "B03", "B04", "B08", "B11")


@dataclass(frozen=True)
class PrefilterThresholds:
    max_ndvi: float = 0.45  # below (and red above blue): bare soil, tailings, turbid water
    min_red_minus_blue: float = 0.005  # above: red soil/sediment, not grey cloud fringes
    min_mndwi: float = 0.0  # above: open water (B03 vs B11) ...
    min_ndwi: float = 0.0  # ... or (B03 vs B08) ...
    max_water_ndvi: float = 0.0  # ... and below: not shadowed forest under thin cloud
    max_cloud_b02: float = 0.35  # above: opaque cloud, never a candidate
    max_nir_minus_red: float = 0.15  # above: vegetation, also under thin cloud and haze
    max_nir_minus_swir: float = 0.10  # above: vegetation under a cloud fringe
    min_pixels: int = 4  # grouped candidate pixels a window needs to be kept


class WindowPrefilter:
    """Decides per window [C, h, w] (reflectance, NaN = nodata) whether the model must run."""

    def __init__(self, bands: Sequence[str], thresholds: PrefilterThresholds | None = None) -> None:
        missing = [b for b in REQUIRED_BANDS if b not in bands]
        if missing:
            raise ValueError(f"the prefilter needs bands {missing}; the model has {list(bands)}")
        self.index = {b: list(bands).index(b) for b in REQUIRED_BANDS}
        self.t = thresholds or PrefilterThresholds()

    @classmethod
    def for_bands(cls, bands: Sequence[str], absent: Sequence[str] = ()) -> WindowPrefilter | None:
        """A prefilter for these bands, or None when they lack the optical bands it needs
        (e.g. Sentinel-1, or RGB-only input whose other bands are ``absent``, read as nodata):
        then every valid window runs."""
        if any(b not in bands or b in absent for b in REQUIRED_BANDS):
            return None
        return cls(bands)

    def candidates(self, window: np.ndarray) -> np.ndarray:
        """bool [h, w]: pixels that could belong to a pit or pond."""
        i = self.index
        blue, green, red = window[i["B02"]], window[i["B03"]], window[i["B04"]]
        nir, swir = window[i["B08"]], window[i["B11"]]
        t = self.t
        with np.errstate(invalid="ignore", divide="ignore"):
            # Index > threshold written without division: (a - b) > t * (a + b).
            bare = (nir - red) < t.max_ndvi * (nir + red)
            bare &= (red - blue) > t.min_red_minus_blue
            wet = (green - swir) > t.min_mndwi * (green + swir)
            wet |= (green - nir) > t.min_ndwi * (green + nir)
            wet &= (nir - red) < t.max_water_ndvi * (nir + red)
            clear = blue <= t.max_cloud_b02  # False for NaN: nodata is never a candidate
            clear &= (nir - red) <= t.max_nir_minus_red
            clear &= (nir - swir) <= t.max_nir_minus_swir
        return clear & (bare | wet)

    def grouped(self, window: np.ndarray) -> np.ndarray:
        """bool [h, w]: candidate pixels with at least one candidate among their 8 neighbours."""
        c = self.candidates(window)
        p = np.pad(c, 1)
        h, w = c.shape
        neighbour = np.zeros_like(c)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                if dr != 1 or dc != 1:
                    neighbour |= p[dr : dr + h, dc : dc + w]
        return c & neighbour

    def enough(self, pixels: np.ndarray) -> bool:
        """True when at least ``min_pixels`` of these (grouped candidate) pixels are set."""
        return int(np.count_nonzero(pixels)) >= self.t.min_pixels

    def keep(self, window: np.ndarray) -> bool:
        """True when the window holds at least ``min_pixels`` grouped candidate pixels."""
        return self.enough(self.grouped(window))
