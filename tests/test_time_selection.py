"""generation.times / times_range pick every window of a requested time, in dataset order."""

from __future__ import annotations

import datetime

import pytest

from helpers.generation.time_selection import select_time_indices
from helpers.infrastructure.errors import ConfigError

T0 = datetime.datetime(2022, 6, 1)
HOURS = [0, 0, 0, 1, 1, 1, 2, 2, 2]  # three windows per time, as converted files have
AVAILABLE = [T0 + datetime.timedelta(hours=h) for h in HOURS]


def test_all_windows_of_a_time_in_request_order():
    assert select_time_indices(AVAILABLE, ["2022-06-01T02:00", "2022-06-01T00:00"], None) == [
        6, 7, 8, 0, 1, 2]
    assert select_time_indices(AVAILABLE, ["2022-06-01T01:00", "2022-06-01T01:00"], None) == [
        3, 4, 5]  # asked twice, generated once
    assert select_time_indices(AVAILABLE, None, ["2022-06-01T01:00", "2022-06-01T02:00",
                                                 "1h"]) == [3, 4, 5, 6, 7, 8]
    assert select_time_indices(AVAILABLE, None, None) == list(range(9))


def test_unknown_time_names_the_nearest():
    with pytest.raises(ConfigError, match=r"nearest available: .*2022-06-01T02:00"):
        select_time_indices(AVAILABLE, ["2022-06-01T03:00"], None)
