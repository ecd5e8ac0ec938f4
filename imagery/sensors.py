"""Sensors declared as data: band names, native resolutions, model band stack, dtype and scaling.

Follows TorchGeo's habit of describing a sensor by a table rather than by code. Reflectance scaling
and the processing-baseline offset of Sentinel-2 are in ``imagery.scaling``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Band:
    name: str  # ESA band name, e.g. "B02", or polarisation "VV"
    resolution_m: float  # native ground sampling distance
    wavelength_um: float | None = None  # centre wavelength (optical bands)
    common_name: str | None = None  # STAC eo:common_name / Earth Search asset key


@dataclass(frozen=True)
class Sensor:
    name: str  # stable identifier used in bundles, the API and tile metadata
    title: str
    bands: tuple[Band, ...]
    default_stack: tuple[str, ...]  # the model's input bands, in order
    rgb_bands: tuple[str, ...]  # true colour, for rendering
    false_color_bands: tuple[str, ...]  # makes water and bare soil stand out
    dtype: str  # on-disk dtype of the product
    nodata: float  # on-disk nodata value
    scale: float  # physical value = DN * scale + offset (offset may depend on baseline)
    units: str
    grid_m: float = 10.0  # the grid the model works on
    extra: dict[str, str] = field(default_factory=dict)

    def band(self, name: str) -> Band:
        for band in self.bands:
            if name in (band.name, band.common_name):
                return band
        raise KeyError(f"{self.name} has no band {name!r}; it has {self.band_names}")

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band_name(self, label: str) -> str | None:
        """The band a file's label names: 'B02', 'b2', 'blue' (STAC eo:common_name) -> 'B02'.

        None when the label is not one of this sensor's bands (e.g. GDAL's 'Band 1').
        """
        text = label.strip()
        m = _PADDED_BAND.match(text)
        if m:  # B2 -> B02, b8a -> B8A
            n = int(m.group(1))
            text = f"B{n}A" if m.group(2) else f"B{n:02d}"
        for band in self.bands:
            if text.upper() == band.name.upper() or text.lower() == (band.common_name or "\0"):
                return band.name
        return None


_PADDED_BAND = re.compile(r"^[Bb]0?(\d{1,2})([Aa]?)$")

_S2_BANDS = (
    Band("B01", 60, 0.443, "coastal"),
    Band("B02", 10, 0.490, "blue"),
    Band("B03", 10, 0.560, "green"),
    Band("B04", 10, 0.665, "red"),
    Band("B05", 20, 0.705, "rededge1"),
    Band("B06", 20, 0.740, "rededge2"),
    Band("B07", 20, 0.783, "rededge3"),
    Band("B08", 10, 0.842, "nir"),
    Band("B8A", 20, 0.865, "nir08"),
    Band("B09", 60, 0.945, "nir09"),
    Band("B10", 60, 1.375, "cirrus"),
    Band("B11", 20, 1.610, "swir16"),
    Band("B12", 20, 2.190, "swir22"),
)
S2_STACK = ("B02", "B03", "B04", "B08", "B11", "B12")

SENTINEL2_L2A = Sensor(
    name="sentinel2-l2a",
    title="Sentinel-2 MSI Level-2A (bottom-of-atmosphere reflectance)",
    bands=tuple(b for b in _S2_BANDS if b.name != "B10"),  # L2A drops the cirrus band
    default_stack=S2_STACK,
    rgb_bands=("B04", "B03", "B02"),
    false_color_bands=("B12", "B08", "B04"),
    dtype="uint16",
    nodata=0,
    scale=1e-4,
    units="reflectance",
    extra={"scl": "SCL"},
)

SENTINEL2_L1C = Sensor(
    name="sentinel2-l1c",
    title="Sentinel-2 MSI Level-1C (top-of-atmosphere reflectance)",
    bands=_S2_BANDS,
    default_stack=S2_STACK,
    rgb_bands=("B04", "B03", "B02"),
    false_color_bands=("B12", "B08", "B04"),
    dtype="uint16",
    nodata=0,
    scale=1e-4,
    units="reflectance",
)

SENTINEL1_GRD = Sensor(
    name="sentinel1-grd",
    title="Sentinel-1 C-band SAR, IW Ground Range Detected",
    bands=(Band("VV", 10), Band("VH", 10)),
    default_stack=("VV", "VH"),
    rgb_bands=("VV", "VH", "VV"),
    false_color_bands=("VV", "VH", "VV"),
    dtype="uint16",
    nodata=0,
    scale=1.0,  # DN; see imagery.sentinel1 for the calibration to dB
    units="dB",
)

SENSORS: dict[str, Sensor] = {s.name: s for s in (SENTINEL2_L2A, SENTINEL2_L1C, SENTINEL1_GRD)}


def get_sensor(name: str) -> Sensor:
    """Look a sensor up by its identifier; raises ``ImageryError(UNKNOWN_SENSOR)``."""
    from imagery.errors import ImageryError, Reason

    try:
        return SENSORS[name]
    except KeyError:
        raise ImageryError(
            Reason.UNKNOWN_SENSOR, f"unknown sensor {name!r}; known: {sorted(SENSORS)}"
        ) from None
