"""Surface weather on the fine grid, diagnosed from the flow and the full-resolution terrain.

The flow is solved on a grid twice as coarse as the output; here it meets the 3 km terrain.
These are the parts of the synthetic fields a downscaling model can learn from orography
(lapse rate, slope aspect, terrain blocking and exposure, upslope rain), layered on the parts
it cannot (eddies, temperature and moisture filaments, rain bands).
"""

from __future__ import annotations

import numpy as np

from datasets.synthetic_terrain import Terrain

AIR_DENSITY = 1.2  # kg/m^3 near the surface


def gaussian_smooth(field: np.ndarray, sigma_m: float, grid_spacing_m: float) -> np.ndarray:
    """Periodic Gaussian smoothing of the last two axes (spectral, so exact and fast)."""
    ny, nx = field.shape[-2:]
    ky = 2 * np.pi * np.fft.fftfreq(ny, grid_spacing_m)[:, None]
    kx = 2 * np.pi * np.fft.rfftfreq(nx, grid_spacing_m)[None, :]
    kernel = np.exp(-(kx**2 + ky**2) * sigma_m**2 / 2)
    return np.fft.irfft2(np.fft.rfft2(field) * kernel, s=(ny, nx))


class SurfaceDiagnostics:
    """Maps flow fields (eddy wind, tracers) to ``10u``, ``10v``, ``2t``, ``tp`` and the
    coarse-only ``tcwv`` and ``msl``; terrain-derived factors are computed once."""

    lapse_rate_k_per_m = 0.0065
    sea_level_temperature_k = 291.0  # at the domain centre; summer afternoon
    aspect_warming_k = 1.0  # sun-facing (south) slopes warmer
    rain_cooling_k, rain_cooling_scale_mm_h = 2.0, 2.0
    blocking = 0.6  # fraction of the across-slope wind removed on steep slopes
    slope_scale = 0.03  # slope at which blocking is half effective
    land_wind_factor, sea_wind_factor = 0.62, 0.85  # 10 m wind / free-flow wind
    exposure_speedup, exposure_scale_m, exposure_sigma_m = 0.3, 250.0, 15e3
    rain_efficiency = 0.2
    reference_lift_m_s, lift_exponent = 0.1, 1.5
    dynamic_lift_per_vort_adv = 3e6  # m/s of ascent per s^-2 of vorticity advection
    rain_band_sigma_m, upslope_sigma_m = 12e3, 3e3
    water_vapour_scale_height_m = 2500.0
    surface_pressure_pa = 101_325.0

    def __init__(
        self,
        terrain: Terrain,
        temperature_gradient_k_per_m: float,
        land_sea_contrast_k: float,
        coast_sigma_m: float,
        f0: float,
    ):
        self.dx = terrain.grid_spacing_km * 1e3
        self.f0 = f0
        h = terrain.elev_mean
        n = h.shape[0]
        # Slopes of the terrain as the flow feels it (smoothed over a grid length); periodic
        # centred differences, the terrain being periodic by construction.
        h_flow = gaussian_smooth(h, self.dx, self.dx)
        self.h_x = (np.roll(h_flow, -1, 1) - np.roll(h_flow, 1, 1)) / (2 * self.dx)
        self.h_y = (np.roll(h_flow, -1, 0) - np.roll(h_flow, 1, 0)) / (2 * self.dx)
        slope = np.hypot(self.h_x, self.h_y)
        self.normal = np.stack([self.h_x, self.h_y]) / np.maximum(slope, 1e-9)
        self.blocking_weight = self.blocking * slope / (slope + self.slope_scale)
        exposure = h - gaussian_smooth(h, self.exposure_sigma_m, self.dx)  # ridge > 0, valley < 0
        land = terrain.lsm_mean
        self.wind_factor = land * self.land_wind_factor * (
            1 + self.exposure_speedup * np.tanh(exposure / self.exposure_scale_m)
        ) + (1 - land) * self.sea_wind_factor
        offsets = (np.arange(n) - (n - 1) / 2) * self.dx
        self.y_m, self.x_m = offsets[:, None], offsets[None, :]
        self.background_temperature = (
            self.sea_level_temperature_k
            - temperature_gradient_k_per_m * self.y_m
            - self.lapse_rate_k_per_m * h
            + land * self.aspect_warming_k * np.clip(self.h_y / 0.05, -1, 1)
            # The flow carries the land-sea contrast only at its own, coarser resolution; the
            # sharp step at the real coastline is added here.
            + land_sea_contrast_k * (land - gaussian_smooth(land, coast_sigma_m, self.dx))
        )
        self.column_factor = (
            AIR_DENSITY * self.water_vapour_scale_height_m / 1000
            * np.exp(-h / self.water_vapour_scale_height_m)
        )

    def __call__(self, flow: dict[str, np.ndarray], wind: np.ndarray) -> dict[str, np.ndarray]:
        """Fine-grid fields from `TerrainFlow.fine_fields` output and the background wind."""
        u = wind[0] + flow["u"]
        v = wind[1] + flow["v"]
        across = u * self.normal[0] + v * self.normal[1]
        u10 = self.wind_factor * (u - self.blocking_weight * across * self.normal[0])
        v10 = self.wind_factor * (v - self.blocking_weight * across * self.normal[1])

        upslope = gaussian_smooth(u * self.h_x + v * self.h_y, self.upslope_sigma_m, self.dx)
        synoptic = -self.dynamic_lift_per_vort_adv * gaussian_smooth(
            flow["vort_adv"], self.rain_band_sigma_m, self.dx
        )
        moisture = np.maximum(flow["moisture"], 0.0)  # g/kg
        # Condensed water falling out per hour, rho q w in kg m^-2 h^-1 = mm/h, growing faster
        # than linearly with the lift (deep convection in strong ascent): the heavy tail.
        lift = np.maximum(upslope + synoptic, 0.0) / self.reference_lift_m_s
        tp = (
            self.rain_efficiency * 3600 * AIR_DENSITY * moisture / 1000
            * self.reference_lift_m_s * lift**self.lift_exponent
        )
        streamfunction = flow["psi"] - wind[0] * self.y_m + wind[1] * self.x_m
        return {
            "10u": u10,
            "10v": v10,
            # Evaporative cooling and shading under rain.
            "2t": self.background_temperature + flow["theta"]
            - self.rain_cooling_k * np.tanh(tp / self.rain_cooling_scale_mm_h),
            "tp": tp,
            "tcwv": self.column_factor * moisture,
            # Geostrophic balance, p = rho f0 psi.
            "msl": self.surface_pressure_pa + AIR_DENSITY * self.f0 * streamfunction,
        }
