"""stats.json: computing it while data stream by, writing it atomically, reading it back."""

import json

import numpy as np
import pytest

from datasets.base import ChannelNormalizer
from datasets.stats_file import (
    RunningMoments,
    channel_stats,
    field_entry,
    read_stats,
    write_stats,
)
from helpers.infrastructure.errors import DataError


def test_running_moments_equal_numpy_over_chunks_and_count_missing():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 3.0, 10_000)
    values[::97] = np.nan
    moments = RunningMoments()
    for chunk in np.array_split(values, 7):
        moments.update(chunk)
    finite = values[np.isfinite(values)]
    assert moments.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert moments.std == pytest.approx(finite.std(), rel=1e-12)
    assert moments.entry() == {"mean": moments.mean, "std": moments.std,
                               "missing_values": True}
    clean = RunningMoments()
    clean.update(finite)
    assert set(clean.entry()) == {"mean", "std"}


def test_field_entry_leaves_missing_cells_out():
    field = np.array([[1.0, 3.0], [np.nan, 5.0]])
    assert field_entry(field) == {"mean": 3.0, "std": pytest.approx(np.std([1.0, 3.0, 5.0]))}


def test_written_stats_read_back_into_a_normalizer(tmp_path):
    path = tmp_path / "stats.json"
    moments = RunningMoments()
    moments.update(np.array([0.0, 2.0, 4.0]))
    write_stats(path, {"input": {"2t": moments.entry()}, "output": {}, "invariant": {}})
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, then renamed
    stats = read_stats(path)
    assert json.loads(path.read_text()) == stats
    normalizer = ChannelNormalizer.from_stats(channel_stats(stats, "input", ["2t"], path))
    np.testing.assert_allclose(normalizer.normalize(np.full((1, 1, 1), 4.0, np.float32)),
                               [[[4.0 - 2.0]]] / np.std([0.0, 2.0, 4.0]), rtol=1e-6)


def test_missing_stats_file_names_the_option_and_the_advice(tmp_path):
    with pytest.raises(DataError, match=r"stats_path '.*nope.json' does not exist; set it to "
                                        r"null to compute statistics"):
        read_stats(tmp_path / "nope.json", "stats_path",
                   if_missing="set it to null to compute statistics")
    with pytest.raises(DataError, match=r"dataset.stats_path .* set dataset.stats_path=<path"):
        read_stats(tmp_path / "nope.json")
