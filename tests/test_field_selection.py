"""Channel specifications: renames, per-variable selections and --select."""

from __future__ import annotations

import pytest

from datasets.field_selection import FieldSpec, parse_fields, parse_selection
from helpers.infrastructure.errors import DataError


def test_parse_fields_with_renames_and_levels():
    fields = parse_fields("2t=t2m, theta@level=1, th10=theta@level=10, q@plev=850@member=0")
    assert fields == [
        FieldSpec("2t", "t2m"),
        FieldSpec("theta_level1", "theta", (("level", "1"),)),
        FieldSpec("th10", "theta", (("level", "10"),)),
        FieldSpec("q_plev850_member0", "q", (("plev", "850"), ("member", "0"))),
    ]
    assert fields[3].text == "q@plev=850@member=0"
    assert parse_fields(["a", "b=c"]) == [FieldSpec("a", "a"), FieldSpec("b", "c")]


def test_bad_specs_are_named():
    with pytest.raises(DataError, match=r"channel name\(s\) \['theta'\] appear more than once"):
        parse_fields("theta,theta")
    with pytest.raises(DataError, match="'level' is not DIM=VALUE"):
        parse_fields("theta@level")
    with pytest.raises(DataError, match="may not contain '/'"):
        parse_fields("a/b=t")


def test_parse_selection():
    assert parse_selection("level=850, member=0") == {"level": "850", "member": "0"}
    assert parse_selection({"level": 850}) == {"level": "850"}
    assert parse_selection(None) == {}
    with pytest.raises(DataError, match="--select: 'level' is not DIM=VALUE"):
        parse_selection("level")
