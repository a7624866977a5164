"""The generated-file format: its layout, its writer and its reader, in one torch-free place.

`generate.py` writes with `EnsembleWriter`; scoring, spectra and plots read with
`open_generated`. The layout (see `layout`) is the reference CorrDiff workflow's, so its tools
(open the root and a group, merge, score with xskillscore) read our files as they are.
"""

from inference.generated_file.layout import GROUPS, SAMPLE_DIMS
from inference.generated_file.reader import (
    channels,
    complete_times,
    field,
    grid_of,
    open_generated,
    sample_dim,
    sample_keys,
    select_variables,
    weather_channels,
)
from inference.generated_file.writer import EnsembleWriter

__all__ = [
    "GROUPS",
    "SAMPLE_DIMS",
    "EnsembleWriter",
    "channels",
    "complete_times",
    "field",
    "grid_of",
    "open_generated",
    "sample_dim",
    "sample_keys",
    "select_variables",
    "weather_channels",
]
