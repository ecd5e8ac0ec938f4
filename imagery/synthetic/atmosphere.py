"""Top-of-atmosphere rendering: TOA = path reflectance + transmittance x surface reflectance.

Level-1C (TOA) data carry the atmosphere that level-2A processing removes: light scattered by air
molecules and aerosols into the sensor (the path reflectance, strongest in blue: the haze and blue
cast of L1C scenes) and the dimming of the surface signal on its way down and up. Per band b:

    TOA_b = rho_path_b + T_b * rho_surface_b

* Rayleigh optical depth tau_R(lambda) = 0.008569 lambda^-4 (1 + 0.0113 lambda^-2 + 0.00013
  lambda^-4), lambda in um (Hansen & Travis 1974, Space Sci. Rev. 16:527-610);
* aerosol optical depth tau_a(lambda) = tau_550 (lambda / 0.55)^-alpha (Angstrom law; alpha about
  1.0-1.8 for the Amazon's biomass-burning and biogenic aerosol, Holben et al. 1998, AERONET);
* path reflectance, single scattering: (tau_R P_R + omega tau_a P_a) / (4 mu_s mu_v), with the
  Rayleigh phase function P_R = 0.75 (1 + cos^2 Theta) at the scattering angle Theta of the
  geometry and a constant aerosol term omega P_a (``AEROSOL_PHASE``);
* total (direct + diffuse) transmittance down and up: exp(-(tau_R / 2 + tau_a / 6) / mu), the
  usual approximation for the forward-scattered share of each (Tanre et al. 1979, Appl. Opt.
  18:3587).

Clouds sit above most of the air: they get only the Rayleigh scattering above ``CLOUD_TOP_KM``.
The aerosol optical depths the generator draws are fitted to the real gallery's dark forest pixels
(``derive_calibration.py``, package data ``amazon.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imagery.sensors import SENSORS
from imagery.synthetic.spectra import BANDS

WAVELENGTH_UM = np.array([SENSORS["sentinel2-l1c"].band(b).wavelength_um for b in BANDS])
AEROSOL_PHASE = 0.30  # omega * P_a at the back-scattering angles of Sentinel-2 over the tropics
RAYLEIGH_SCALE_HEIGHT_KM = 8.0
CLOUD_TOP_KM = 2.5  # low cumulus: the air above holds exp(-2.5 / 8) = 73 % of the Rayleigh depth


def rayleigh_depth(wl_um: np.ndarray = WAVELENGTH_UM) -> np.ndarray:
    w2 = np.asarray(wl_um, np.float64) ** -2
    return 0.008569 * w2**2 * (1 + 0.0113 * w2 + 0.00013 * w2**2)


def aerosol_depth(tau550: float, angstrom: float, wl_um: np.ndarray = WAVELENGTH_UM) -> np.ndarray:
    return tau550 * (np.asarray(wl_um, np.float64) / 0.55) ** -angstrom


@dataclass(frozen=True)
class Atmosphere:
    """One scene's atmosphere and viewing geometry (angles in degrees)."""

    tau550: float = 0.2  # aerosol optical depth at 550 nm
    angstrom: float = 1.3
    sun_zenith: float = 30.0
    view_zenith: float = 5.0
    relative_azimuth: float = 90.0  # sun to view direction

    @property
    def _mu(self) -> tuple[float, float]:
        return float(np.cos(np.radians(self.sun_zenith))), float(
            np.cos(np.radians(self.view_zenith))
        )

    def _rayleigh_phase(self) -> float:
        ts, tv = np.radians(self.sun_zenith), np.radians(self.view_zenith)
        cos_theta = -np.cos(ts) * np.cos(tv) - np.sin(ts) * np.sin(tv) * np.cos(
            np.radians(self.relative_azimuth)
        )
        return float(0.75 * (1 + cos_theta**2))

    def path(self, above_km: float = 0.0) -> np.ndarray:
        """[6] path reflectance per band (``above_km``: only the air above that height, no
        aerosol: a cloud top)."""
        mu_s, mu_v = self._mu
        frac = np.exp(-above_km / RAYLEIGH_SCALE_HEIGHT_KM)
        tau_r = frac * rayleigh_depth()
        tau_a = aerosol_depth(self.tau550, self.angstrom) if above_km == 0 else 0.0
        scatter = tau_r * self._rayleigh_phase() + AEROSOL_PHASE * tau_a
        return (scatter / (4 * mu_s * mu_v)).astype(np.float32)

    def transmittance(self, above_km: float = 0.0) -> np.ndarray:
        """[6] total transmittance sun -> surface -> sensor per band."""
        mu_s, mu_v = self._mu
        frac = np.exp(-above_km / RAYLEIGH_SCALE_HEIGHT_KM)
        tau_r = frac * rayleigh_depth()
        tau_a = aerosol_depth(self.tau550, self.angstrom) if above_km == 0 else 0.0
        ext = tau_r / 2 + tau_a / 6
        return np.exp(-ext * (1 / mu_s + 1 / mu_v)).astype(np.float32)

    def to_toa(self, surface: np.ndarray, band_axis: int = 0) -> np.ndarray:
        """TOA reflectance of surface reflectance (bands along ``band_axis``, all six)."""
        shape = [1] * surface.ndim
        shape[band_axis] = len(BANDS)
        p, t = self.path().reshape(shape), self.transmittance().reshape(shape)
        return (p + t * surface).astype(np.float32)

    def to_surface(self, toa: np.ndarray, band_axis: int = 0) -> np.ndarray:
        """The inverse of ``to_toa``."""
        shape = [1] * toa.ndim
        shape[band_axis] = len(BANDS)
        p, t = self.path().reshape(shape), self.transmittance().reshape(shape)
        return ((toa - p) / t).astype(np.float32)
