"""Pseudo-spectral equivalent-barotropic flow over topography, with temperature and moisture
tracers: the weather generator of the embedded synthetic dataset.

Why this model: winds that feel the terrain and eddies that stir tracers into thin filaments give
the two things a downscaling model must handle, orographic structure that is predictable from
the terrain and fine-scale detail that is not predictable from a coarse input.

Equations (doubly periodic, ``x`` east, ``y`` north, SI units), with ``U(t)`` an imposed,
slowly wandering background wind and ``u`` the eddy wind from the streamfunction ``psi``:

- potential vorticity ``q = zeta + f0 h / H``, ``zeta = lap(psi) - psi / Ld**2``:
  ``dq/dt + (U + u).grad q + beta v = F - r zeta - nu lap**4 zeta``;
- temperature anomaly ``theta`` on a north-south background gradient ``G`` (K/m):
  ``dtheta/dt + (U + u).grad theta = G v + (theta_eq - theta) / tau_theta + F_theta``, where
  ``theta_eq`` is warmer over land than over sea;
- moisture ``m`` (g/kg), evaporated over the sea and rained out by upslope lift
  ``w = (U + u).grad h``: ``dm/dt + (U + u).grad m = (m_eq - m) / tau_m - m max(w, 0) / Hc + F_m``.

``F``, ``F_theta`` and ``F_m`` are random large-scale forcings (air masses), red in time.
Advection by ``U``, drag, relaxation, the beta term and hyperviscosity are integrated exactly
(integrating factor); the rest with classical RK4 at a CFL-limited step, with 2/3-rule
dealiasing. float64 throughout.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

OMEGA = 7.292e-5  # s^-1
EARTH_RADIUS_M = 6_371_229.0
HOUR = 3600.0


class TerrainFlow:
    """The flow state on an ``n x n`` periodic grid of spacing ``grid_spacing_km``, advanced by
    `advance` and sampled on a finer grid by `fine_fields`."""

    # Physical settings; class attributes so experiments can subclass rather than edit.
    depth_m = 8000.0  # depth scale turning terrain into PV, f0 h / H
    deformation_radius_m = 150e3
    drag_per_s = 1 / (3 * 86400.0)
    hyperviscous_time_s = 2 * HOUR  # e-folding time at the dealiasing cut-off
    mean_wind = (7.0, 0.0)  # climatological background wind (m/s), westerly
    mean_wind_std = 4.0
    mean_wind_time_s = 12 * HOUR  # new regimes often, so a few weeks sample many
    temperature_gradient_k_per_m = 1.2e-5  # colder to the north
    land_sea_contrast_k = 5.0
    coast_sigma_m = 12e3  # the flow sees a smoothed coastline
    relax_theta_s = 86400.0
    moisture_sea_gkg, moisture_land_gkg = 14.0, 8.0
    relax_moisture_s = 86400.0
    condensation_depth_m = 8000.0
    forcing_wavelengths_m = (120e3, 320e3)
    forcing_time_s = 12 * HOUR
    vorticity_forcing = 4e-9  # s^-2, rms
    temperature_forcing = 1.2e-4  # K/s, rms
    moisture_forcing = 2.0e-5  # g/kg/s, rms
    cfl = 0.9
    max_step_s = 900.0

    def __init__(
        self,
        rng: np.random.Generator,
        elevation: np.ndarray,
        land_fraction: np.ndarray,
        grid_spacing_km: float,
        center_lat: float,
    ):
        n = elevation.shape[0]
        if elevation.shape != (n, n) or n % 2:
            raise ValueError(f"flow grid must be square with an even size, got {elevation.shape}")
        self.rng = rng
        self.n = n
        self.dx = grid_spacing_km * 1e3
        lat = np.deg2rad(center_lat)
        self.f0 = 2 * OMEGA * np.sin(lat)
        beta = 2 * OMEGA * np.cos(lat) / EARTH_RADIUS_M

        ky = 2 * np.pi * np.fft.fftfreq(n, self.dx)[:, None]
        kx = 2 * np.pi * np.fft.rfftfreq(n, self.dx)[None, :]
        self.ikx, self.iky = 1j * kx * np.ones_like(ky), 1j * ky * np.ones_like(kx)
        k2 = kx**2 + ky**2
        self.k2 = k2
        kappa2 = 1 / self.deformation_radius_m**2
        self.inv_helmholtz = -1 / (k2 + kappa2)  # psi_hat = inv_helmholtz * zeta_hat
        self.inv_helmholtz[0, 0] = 0.0
        cutoff = (2 / 3) * np.pi / self.dx
        self.dealias = ((np.abs(kx) < cutoff) & (np.abs(ky) < cutoff)).astype(np.float64)
        hyper = (k2 / cutoff**2) ** 4 / self.hyperviscous_time_s
        damping = np.array([self.drag_per_s, 1 / self.relax_theta_s, 1 / self.relax_moisture_s])
        self._static_linear = -(damping[:, None, None] + hyper[None]).astype(np.complex128)
        # Rossby-wave term -beta v, linear in zeta_hat.
        self._static_linear[0] += -beta * self.ikx * self.inv_helmholtz
        band = (k2 >= (2 * np.pi / self.forcing_wavelengths_m[1]) ** 2) & (
            k2 <= (2 * np.pi / self.forcing_wavelengths_m[0]) ** 2
        )
        if not band.any():  # domain smaller than the forcing scale: force its largest modes
            band = (k2 > 0) & (k2 <= 4.01 * k2[k2 > 0].min())
        self._band = band.astype(np.float64)

        def spectral(field: np.ndarray) -> np.ndarray:
            return sfft.rfft2(np.asarray(field, dtype=np.float64))

        self.topo_pv_hat = spectral(self.f0 * elevation / self.depth_m) * self.dealias
        elev_hat = spectral(elevation) * self.dealias
        self.elev_grad = sfft.irfft2(np.stack([self.ikx, self.iky]) * elev_hat, s=(n, n))
        land_hat = spectral(land_fraction)
        land_smooth = sfft.irfft2(land_hat * np.exp(-k2 * self.coast_sigma_m**2 / 2), s=(n, n))
        theta_eq = self.land_sea_contrast_k * (land_smooth - land_smooth.mean())
        m_eq = self.moisture_sea_gkg + (self.moisture_land_gkg - self.moisture_sea_gkg) * np.clip(
            land_smooth, 0, 1
        )
        self._relax_source = np.stack(
            [np.zeros_like(k2), spectral(theta_eq) / self.relax_theta_s,
             spectral(m_eq) / self.relax_moisture_s]
        ).astype(np.complex128)
        self.wind = np.array(self.mean_wind, dtype=np.float64)
        self.forcing = np.stack(
            [self._band_noise() * self.vorticity_forcing,
             self._band_noise() * self.temperature_forcing,
             self._band_noise() * self.moisture_forcing]
        )
        # Initial state: eddies at the forcing scale, tracers at equilibrium plus noise.
        zeta0 = self._band_noise() * 3e-5
        self.state = np.stack(
            [zeta0, spectral(theta_eq) + self._band_noise() * 1.0, spectral(m_eq)]
        ) * self.dealias
        self.time_s = 0.0
        self.max_eddy_speed = 5.0

    # ------------------------------------------------------------------ random forcing
    def _band_noise(self) -> np.ndarray:
        """Spectrum of a random field confined to the forcing band with unit physical rms."""
        noise = sfft.rfft2(self.rng.standard_normal((self.n, self.n))) * self._band
        rms = np.sqrt(np.mean(sfft.irfft2(noise, s=(self.n, self.n)) ** 2))
        return noise / rms

    def _update_forcing(self, interval_s: float) -> None:
        """Red-noise (AR(1)) update of the background wind and the random forcing."""
        a = np.exp(-interval_s / self.mean_wind_time_s)
        self.wind = np.array(self.mean_wind) + a * (self.wind - np.array(self.mean_wind)) + (
            np.sqrt(1 - a**2) * self.mean_wind_std * self.rng.standard_normal(2)
        )
        b = np.exp(-interval_s / self.forcing_time_s)
        fresh = np.stack([self._band_noise() * self.vorticity_forcing,
                          self._band_noise() * self.temperature_forcing,
                          self._band_noise() * self.moisture_forcing])
        self.forcing = b * self.forcing + np.sqrt(1 - b**2) * fresh

    # ------------------------------------------------------------------ dynamics
    def _tendency(self, state: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Non-linear (eddy advection, condensation) tendencies plus constant sources."""
        zeta, theta, moist = state
        psi = self.inv_helmholtz * zeta
        q = zeta + self.topo_pv_hat
        u_hat, v_hat = -self.iky * psi, self.ikx * psi
        spectral = np.stack([
            u_hat, v_hat, self.ikx * q, self.iky * q, self.ikx * theta, self.iky * theta,
            self.ikx * moist, self.iky * moist, moist,
        ])
        u, v, qx, qy, tx, ty, mx, my, m = sfft.irfft2(spectral, s=(self.n, self.n))
        lift = (self.wind[0] + u) * self.elev_grad[0] + (self.wind[1] + v) * self.elev_grad[1]
        condensation = np.maximum(m, 0) * np.maximum(lift, 0) / self.condensation_depth_m
        physical = np.stack([u * qx + v * qy, u * tx + v * ty, u * mx + v * my + condensation])
        self._max_eddy = max(np.abs(u).max(), np.abs(v).max())
        tendency = -sfft.rfft2(physical) * self.dealias
        tendency[1] += self.temperature_gradient_k_per_m * v_hat
        return tendency + source

    def advance(self, interval_s: float) -> None:
        """Integrate ``interval_s`` seconds with the largest stable step (RK4 with integrating
        factor); background wind and forcing are held fixed over the interval, then updated."""
        # Spectral advection is stable for k_max (|u| + |v|) dt < 2.8 with RK4; the step uses
        # the fastest eddy of the previous interval.
        cfl_step = self.cfl * self.dx / (2 * self.max_eddy_speed)
        steps = int(np.ceil(interval_s / min(self.max_step_s, cfl_step)))
        dt = interval_s / steps
        advect = -(self.ikx * self.wind[0] + self.iky * self.wind[1])
        linear = self._static_linear + advect[None]
        full, half = np.exp(linear * dt), np.exp(linear * dt / 2)
        source = self._relax_source + self.forcing * self.dealias
        source[0] += advect * self.topo_pv_hat  # -U.grad(f0 h / H)
        s = self.state
        peak = 0.0
        for _ in range(steps):
            k1 = self._tendency(s, source)
            peak = max(peak, self._max_eddy)
            k2 = self._tendency(half * (s + dt / 2 * k1), source)
            k3 = self._tendency(half * s + dt / 2 * k2, source)
            k4 = self._tendency(full * s + dt * half * k3, source)
            s = full * s + dt / 6 * (full * k1 + 2 * half * (k2 + k3) + k4)
        if not np.isfinite(s).all():
            raise FloatingPointError("synthetic flow blew up; reduce the CFL number")
        self.state = s
        self.max_eddy_speed = max(peak, self._max_eddy, 1.0)
        self.time_s += interval_s
        self._update_forcing(interval_s)

    # ------------------------------------------------------------------ output
    def fine_fields(self, n_fine: int) -> dict[str, np.ndarray]:
        """Eddy wind ``u``/``v`` (m/s), streamfunction ``psi`` (m^2/s), ``theta`` (K), moisture
        ``moisture`` (g/kg) and vorticity advection ``vort_adv`` (s^-2) on an ``n_fine`` grid
        (spectral interpolation, exact for the band-limited solution)."""
        zeta, theta, moist = self.state
        psi = self.inv_helmholtz * zeta
        rel_vort = -self.k2 * psi
        u_hat, v_hat = -self.iky * psi, self.ikx * psi
        u, v, vx, vy = sfft.irfft2(
            np.stack([u_hat, v_hat, self.ikx * rel_vort, self.iky * rel_vort]), s=(self.n, self.n)
        )
        vort_adv = sfft.rfft2((self.wind[0] + u) * vx + (self.wind[1] + v) * vy) * self.dealias
        names = ("u", "v", "psi", "theta", "moisture", "vort_adv")
        stacked = np.stack([u_hat, v_hat, psi, theta, moist, vort_adv])
        return dict(zip(names, spectral_upsample(stacked, n_fine), strict=True))


def spectral_upsample(spectra: np.ndarray, n_fine: int) -> np.ndarray:
    """Physical fields on an ``n_fine`` grid from ``[..., n, n//2+1]`` rfft2 spectra of ``n x n``
    fields, by zero-padding the spectrum (Nyquist modes dropped)."""
    n = spectra.shape[-2]
    half = n // 2
    padded = np.zeros((*spectra.shape[:-2], n_fine, n_fine // 2 + 1), dtype=np.complex128)
    padded[..., :half, :half] = spectra[..., :half, :half]
    padded[..., n_fine - half + 1:, :half] = spectra[..., half + 1:, :half]
    return sfft.irfft2(padded, s=(n_fine, n_fine)) * (n_fine / n) ** 2
