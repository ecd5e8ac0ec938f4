"""Surface-reflectance spectra of tropical land covers in the model bands B02 B03 B04 B08 B11 B12.

Means are representative Sentinel-2 L2A values, chosen within the ranges these sources report:

* Humid tropical forest, regrowth, pasture: Asner (1998) "Biophysical and biochemical sources of
  variability in canopy reflectance", Remote Sens. Environ. 64:234-253 (NIR 0.25-0.40, red
  0.02-0.04, SWIR2 0.04-0.08 for closed canopies); Caballero Espejo et al. (2018) "Deforestation and
  forest degradation due to gold mining in the Peruvian Amazon: a 34-year perspective", Remote Sens.
  10:1903.
* Mining ponds, tailings and turbid rivers: Lobo, Costa & Novo (2015) "Time-series analysis of
  Landsat-MSS/TM/OLI images over Amazonian waters impacted by gold mining activities", Remote Sens.
  Environ. 157:170-184 (Tapajos basin: red reflectance rises from ~0.02 in clear water to > 0.10 at
  hundreds of mg/L suspended solids, NIR stays below green/red); Lobo et al. (2018) "Mapping mining
  areas in the Brazilian Amazon using MSI/Sentinel-2 imagery (2017)", Remote Sens. 10:1178
  (Sentinel-2 spectra of mining ponds, exposed soil and forest); Asner et al. (2013) "Elevated rates
  of gold mining in the Amazon revealed through high-resolution monitoring", PNAS 110:18454-18459
  (Madre de Dios: bare sandy tailings and ponds replacing forest along rivers).
* Black-water rivers (CDOM-rich, Rio Negro type) and clear-water lakes: reflectance < 0.02 in all
  bands, the Lobo et al. (2015) clear-water end of the range.
* Lateritic soils, sand, roofs: USGS Spectral Library v7, Kokaly et al. (2017), USGS Data Series
  1035 (iron-oxide soils: red > green, reflectance rising into SWIR1; quartz sand bright and flat).
* Clouds: bright and nearly flat in the visible/NIR, lower in SWIR (Zhu & Woodcock 2012,
  "Object-based cloud and cloud shadow detection in Landsat imagery", Remote Sens. Environ.
  118:83-94).

Real spectra derived from ../shared/data by ``derive_assets.py`` (clear lakes, bare soil) widen the
palette. Every scene and every object re-draws its spectra around these means (brightness, band
tilt, mixing), so a model trained on the generator has to learn shape and context, not one palette.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

from imagery.errors import AsmSpotterError, Reason

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
ASSETS = Path(__file__).resolve().parent  # package data: shapes.json, spectra.json

ENDMEMBERS: dict[str, tuple[float, ...]] = {
    "forest": (0.020, 0.040, 0.022, 0.300, 0.140, 0.058),
    "forest_shade": (0.012, 0.024, 0.013, 0.170, 0.075, 0.030),
    "secondary": (0.028, 0.058, 0.034, 0.360, 0.180, 0.080),
    "pasture_wet": (0.038, 0.070, 0.060, 0.310, 0.240, 0.120),
    "pasture_dry": (0.060, 0.090, 0.110, 0.250, 0.320, 0.220),
    "laterite": (0.060, 0.095, 0.160, 0.230, 0.320, 0.260),
    "tailings": (0.110, 0.150, 0.190, 0.240, 0.330, 0.280),
    "wet_soil": (0.045, 0.065, 0.090, 0.130, 0.120, 0.080),
    "pond_turbid": (0.055, 0.095, 0.120, 0.070, 0.020, 0.012),
    "pond_moderate": (0.035, 0.055, 0.055, 0.030, 0.010, 0.006),
    "pond_green": (0.025, 0.048, 0.030, 0.030, 0.010, 0.006),
    # Fine kaolinitic clay in suspension: the milky turquoise of settled mining ponds.
    "pond_turquoise": (0.070, 0.095, 0.075, 0.035, 0.010, 0.006),
    "pond_deep": (0.018, 0.024, 0.020, 0.012, 0.005, 0.003),
    "river_white": (0.050, 0.080, 0.095, 0.050, 0.015, 0.009),
    "river_black": (0.010, 0.014, 0.014, 0.008, 0.004, 0.003),
    "lake_clear": (0.025, 0.030, 0.018, 0.008, 0.004, 0.003),
    "fishpond": (0.030, 0.055, 0.035, 0.035, 0.012, 0.007),
    "road": (0.080, 0.110, 0.160, 0.220, 0.300, 0.240),
    "roof": (0.220, 0.230, 0.240, 0.270, 0.250, 0.210),
    "sand": (0.120, 0.160, 0.200, 0.250, 0.330, 0.280),
    "cloud": (0.480, 0.470, 0.470, 0.500, 0.340, 0.220),
}
WATER = {"pond_turbid", "pond_moderate", "pond_green", "pond_turquoise", "pond_deep", "fishpond"}
WATER |= {"river_white", "river_black", "lake_clear", "mine_water"}
PALETTES = ("legacy", "amazon")


def band_indices(bands: tuple[str, ...]) -> list[int]:
    """Positions of ``bands`` in the generator's stack; unknown or repeated bands are refused."""
    unknown = [b for b in bands if b not in BANDS]
    if unknown or not bands or len(set(bands)) != len(bands):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"bands must be distinct names among {', '.join(BANDS)}; got {', '.join(bands)}",
        )
    return [BANDS.index(b) for b in bands]


@cache
def derived_spectra() -> dict[str, np.ndarray]:
    """Real spectra from the shared scenes (package data written by derive_assets)."""
    doc = json.loads((ASSETS / "spectra.json").read_text())
    return {
        k: np.asarray(v["spectra"], np.float32)
        for k, v in doc.items()
        if isinstance(v, dict) and v.get("spectra")
    }


class Palette:
    """One scene's spectra: every endmember re-drawn once per scene, then per object."""

    calibrated = False

    def __init__(self, rng: np.random.Generator, spread: float = 1.0) -> None:
        self.rng = rng
        self.spread = spread
        self.scene: dict[str, np.ndarray] = {}
        derived = derived_spectra()
        for name, mean in ENDMEMBERS.items():
            base = np.asarray(mean, np.float32)
            if name == "lake_clear" and "clear_lake" in derived and rng.random() < 0.15:
                base = derived["clear_lake"][rng.integers(len(derived["clear_lake"]))]
            if name in ("laterite", "pasture_dry") and "bare_soil" in derived:
                if rng.random() < 0.25:  # real (arid) bare soil, darkened towards humid soils
                    soil = derived["bare_soil"][rng.integers(len(derived["bare_soil"]))]
                    base = 0.5 * base + 0.5 * soil * np.float32(rng.uniform(0.6, 0.9))
            tilt = 0.015 if name == "cloud" else 0.07  # clouds stay white
            self.scene[name] = self._jitter(base, 0.15, tilt)

    def _jitter(self, spec: np.ndarray, brightness: float, tilt: float) -> np.ndarray:
        s = self.spread
        gain = np.exp(self.rng.normal(0, brightness * s))
        bands = np.exp(self.rng.normal(0, tilt * s, size=spec.shape))
        return (spec * gain * bands).astype(np.float32)

    def _base(self, name: str) -> np.ndarray:
        return self.scene[name]

    def draw(
        self, name: str, mix: str | None = None, mix_range: tuple[float, float] = (0, 0)
    ) -> np.ndarray:
        """One object's spectrum: the scene's ``name`` (optionally mixed with ``mix``), jittered."""
        spec = self._base(name)
        if mix is not None:
            t = self.rng.uniform(*mix_range)
            spec = (1 - t) * spec + t * self._base(mix)
        out = self._jitter(spec, 0.08, 0.01 if name == "cloud" else 0.035)
        if name in WATER:  # water stays water: NIR below green (NDWI > 0), SWIR dark
            out[3] = min(out[3], 0.85 * out[1])
            out[4:] = np.minimum(out[4:], 0.6 * out[3] + 0.004)
        return np.clip(out, 0.001, 1.0)


@cache
def calibration() -> dict:
    """The Amazon calibration (package data written by ``derive_calibration.py``)."""
    return json.loads((ASSETS / "amazon.json").read_text())


MINE_ROLES = ("soil", "water", "vegetation")  # mining materials by use: "mine_soil", ...


class AmazonPalette(Palette):
    """Spectra recalibrated against real Sentinel-2 chips of the Amazon (``amazon.json``).

    The forest keeps its cited spectrum, tilted by the fitted residual and scaled by the scene's
    fitted gain; mining materials (``mine_soil``, ``mine_water``, ``mine_vegetation``) and the
    look-alikes' materials (river_white, sand, road, ...) are drawn per object from the clusters
    of real pixels, weighted by their share. Everything else keeps the cited endmembers.
    """

    calibrated = True

    def __init__(self, rng: np.random.Generator, spread: float = 1.0, forest_gain: float = 1.0):
        self.rng = rng
        self.spread = spread
        cal = calibration()
        groups: dict[str, list[dict]] = {}
        for m in cal["scene_materials"]:
            groups.setdefault(m["material"], []).append(m)
        for m in cal["mine_materials"]:
            groups.setdefault(f"mine_{m['role']}", []).append(m)
        self.choices = {}
        for name, members in groups.items():
            spectra = np.asarray([m["spectrum"] for m in members], np.float32)
            weights = np.asarray([m["weight"] for m in members], np.float64)
            self.choices[name] = (spectra, weights / weights.sum())
        tilt = np.ones(len(BANDS), np.float32)
        tilt[:3] = cal["atmosphere"]["forest_tilt"]
        self.scene = {}
        for name, mean in ENDMEMBERS.items():
            base = np.asarray(mean, np.float32)
            if name in ("forest", "forest_shade"):  # brightness already drawn with the atmosphere
                self.scene[name] = self._jitter(base * tilt * np.float32(forest_gain), 0.03, 0.03)
                continue
            tint = 0.015 if name == "cloud" else 0.07
            self.scene[name] = self._jitter(base, 0.15, tint)
        # one tint per scene for each calibrated material, applied to every object drawn from it
        self.tint = {name: self._jitter(np.ones(len(BANDS)), 0.08, 0.04) for name in self.choices}
        for name, (spectra, weights) in self.choices.items():
            self.scene[name] = (weights @ spectra).astype(np.float32) * self.tint[name]

    def _base(self, name: str) -> np.ndarray:
        if name not in self.choices:
            return self.scene[name]
        spectra, weights = self.choices[name]
        return spectra[self.rng.choice(len(spectra), p=weights)] * self.tint[name]
