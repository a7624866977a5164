"""Synthetic generated files with known statistics, for tests, benchmarks and trying the tools
without a trained model.

At each pixel a common signal ``mu ~ N(0, 1)`` is drawn; truth is ``mu + e`` and each member
``mu + dispersion * e_m`` with e, e_m ~ N(0, 1) independent. ``dispersion = 1`` is a calibrated
ensemble (truth is exchangeable with the members), below 1 under-dispersed. The input is
``mu`` plus noise (a weaker, deterministic guess), and ``regression=True`` writes ``mu`` itself
as a one-member ``inference_mode=regression`` file with the same truth.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datasets.variable_metadata import ChannelMetadata
from inference.generated_file import EnsembleWriter


def write_synthetic(
    path: str | os.PathLike,
    n_times: int = 4,
    n_members: int = 8,
    shape: tuple[int, int] = (32, 40),
    outputs: Sequence[str] = ("2t", "10u"),
    inputs: Sequence[str] = ("2t", "tcwv"),
    dispersion: float = 1.0,
    seed: int = 0,
    latlon: bool = True,
    regression: bool = False,
    input_noise: float = 0.5,
) -> Path:
    """Write a file in the generate.py layout (see the module docstring); returns its path.
    The same ``seed`` gives the same truth for the ensemble and the regression file."""
    height, width = shape
    times = [datetime.datetime(2021, 1, 1) + datetime.timedelta(hours=3 * t)
             for t in range(n_times)]
    if latlon:
        lat, lon = np.meshgrid(np.linspace(35.0, 36.0, height), np.linspace(-120.0, -118.8, width),
                               indexing="ij")
    else:
        lat = lon = np.full(shape, np.nan)
    in_channels = [ChannelMetadata(n) for n in inputs] + [ChannelMetadata("elev_mean",
                                                                          auxiliary=True)]
    members = 1 if regression else n_members
    attrs = {"inference_mode": "regression" if regression else "all"}
    with EnsembleWriter(path, times, members, lat, lon, in_channels,
                        [ChannelMetadata(n) for n in outputs], attributes=attrs,
                        compression_level=0) as writer:
        elevation = np.linspace(0.0, 1000.0, width)[None].repeat(height, 0)
        for t in range(n_times):
            rng = np.random.default_rng([seed, t])
            mu = rng.normal(size=(len(outputs), height, width))
            truth = mu + rng.normal(size=mu.shape)
            guess = mu + input_noise * rng.normal(size=mu.shape)
            by_name = dict(zip(outputs, guess, strict=True))
            fields = [by_name.get(n, rng.normal(size=shape)) for n in inputs] + [elevation]
            if regression:
                prediction = mu[None]
            else:
                prediction = mu + dispersion * rng.normal(size=(members, *mu.shape))
            writer.write_time(t, np.stack(fields), truth, prediction)
    return Path(path)
