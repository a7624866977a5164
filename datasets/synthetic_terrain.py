"""Static fields of the synthetic domain: the HRRR-like map projection and the orography.

The embedded dataset needs a grid that looks and behaves like a piece of the HRRR grid (a 2-D
lat/lon from a Lambert conformal projection) and terrain whose statistics resemble real
mountains (a power-law spectrum), so that downscaling has orographic detail to learn. Everything
is periodic on the fine grid because the flow solver is doubly periodic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_371_229.0  # sphere used by HRRR
# HRRR's Lambert conformal grid: both standard parallels at 38.5 N, central meridian 97.5 W.
LCC_STANDARD_PARALLEL = 38.5
LCC_CENTRAL_LONGITUDE = -97.5


@dataclass(frozen=True)
class LambertConformal:
    """Spherical Lambert conformal conic with one standard parallel (tangent cone), which is the
    HRRR case (``truelat1 == truelat2``); ``x`` east, ``y`` north, metres."""

    standard_parallel: float = LCC_STANDARD_PARALLEL
    central_longitude: float = LCC_CENTRAL_LONGITUDE
    origin_latitude: float = LCC_STANDARD_PARALLEL
    radius: float = EARTH_RADIUS_M

    @property
    def _cone(self) -> tuple[float, float, float]:
        phi1 = np.deg2rad(self.standard_parallel)
        n = np.sin(phi1)
        big_f = np.cos(phi1) * np.tan(np.pi / 4 + phi1 / 2) ** n / n
        rho0 = self.radius * big_f / np.tan(np.pi / 4 + np.deg2rad(self.origin_latitude) / 2) ** n
        return n, big_f, rho0

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees to projected ``(x, y)`` in metres."""
        n, big_f, rho0 = self._cone
        rho = self.radius * big_f / np.tan(np.pi / 4 + np.deg2rad(lat) / 2) ** n
        theta = n * np.deg2rad(np.asarray(lon) - self.central_longitude)
        return rho * np.sin(theta), rho0 - rho * np.cos(theta)

    def inverse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projected ``(x, y)`` in metres to ``(lat, lon)`` in degrees."""
        n, big_f, rho0 = self._cone
        dy = rho0 - np.asarray(y, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        rho = np.hypot(x, dy)
        theta = np.arctan2(x, dy)
        lat = 2 * np.arctan((self.radius * big_f / rho) ** (1 / n)) - np.pi / 2
        lon = self.central_longitude + np.rad2deg(theta / n)
        return np.rad2deg(lat), lon


def lat_lon_grid(
    n: int, grid_spacing_km: float, center_lat: float, center_lon: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(lat, lon)`` of an ``n x n`` HRRR-projection grid centred on a point; row index grows
    northward and column index eastward, as in HRRR files."""
    proj = LambertConformal()
    xc, yc = proj.forward(np.float64(center_lat), np.float64(center_lon))
    offsets = (np.arange(n) - (n - 1) / 2) * grid_spacing_km * 1e3
    y, x = np.meshgrid(yc + offsets, xc + offsets, indexing="ij")
    return proj.inverse(x, y)


def spectral_noise(
    rng: np.random.Generator, n: int, slope: float, min_wavelength_px: float = 2.0
) -> np.ndarray:
    """Periodic Gaussian random field with isotropic power spectrum ``k**-slope``, zero mean and
    unit standard deviation (spectral synthesis: filtered white noise)."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij"))
    amplitude = np.zeros_like(k)
    keep = (k > 0) & (k <= 1 / min_wavelength_px)
    amplitude[keep] = k[keep] ** (-slope / 2)
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((n, n))) * amplitude, s=(n, n))
    return (field - field.mean()) / field.std()


@dataclass(frozen=True)
class Terrain:
    """Orography on the fine grid: ``elev_mean`` (m, 0 over sea), ``lsm_mean`` (1 land, 0 sea),
    ``lat``/``lon`` (degrees) and the grid spacing."""

    elev_mean: np.ndarray
    lsm_mean: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    grid_spacing_km: float


def make_terrain(
    rng: np.random.Generator,
    n: int,
    grid_spacing_km: float = 3.0,
    center_lat: float = 38.5,
    center_lon: float = -121.0,
) -> Terrain:
    """A coastal mountain range on a periodic ``n x n`` grid: an ocean basin in the west, a
    coast range and a high main ridge running roughly north-south (think northern California:
    Pacific, Coast Ranges, Sierra Nevada), plus fractal terrain with a ``k**-2.8`` spectrum that
    is rougher in the mountains than on the plains. Sea is wherever the ocean basin dips below
    0 m; its elevation is set to 0. Physical scales (ridge widths in km) do not depend on
    ``n``."""
    km = (np.arange(n) * grid_spacing_km)[None, :] * np.ones((n, 1))
    row_km = (np.arange(n) * grid_spacing_km)[:, None] * np.ones((1, n))
    length_km = n * grid_spacing_km
    # North-south undulation of the ridge axis (periodic in y), in km.
    meander = 0.06 * length_km * np.sin(2 * np.pi * row_km / length_km + rng.uniform(0, 2 * np.pi))

    def ridge(center_frac: float, width_km: float, power: int = 2) -> np.ndarray:
        # Periodic distance in x from the axis, in km.
        dist = (km - center_frac * length_km - meander + length_km / 2) % length_km
        return np.exp(-np.abs((dist - length_km / 2) / width_km) ** power)

    ocean = ridge(0.14, 0.13 * length_km, power=4)  # flat-bottomed basin, a quarter of the domain
    base = 400.0 + 2000.0 * ridge(0.68, 55.0) + 800.0 * ridge(0.40, 22.0) - 1900.0 * ocean
    mountainous = np.clip(base / 1500.0, 0.3, 1.4)
    raw = base + 550.0 * mountainous * spectral_noise(rng, n, slope=2.8)
    # Summits flatten out above 3.5 km (the highest stay below 4.5 km).
    raw = np.where(raw > 3500.0, 3500.0 + 1000.0 * np.tanh((raw - 3500.0) / 1000.0), raw)
    # Sea is the ocean basin below 0 m; inland depressions stay land, at 0 m.
    sea = (raw < 0) & (ocean > 0.05)
    lat, lon = lat_lon_grid(n, grid_spacing_km, center_lat, center_lon)
    return Terrain(
        elev_mean=np.maximum(raw, 0.0),
        lsm_mean=(~sea).astype(np.float64),
        lat=lat,
        lon=lon,
        grid_spacing_km=grid_spacing_km,
    )
