"""The one way command lines report user errors: one line, exit status 1."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from helpers.infrastructure.errors import ConfigError, DataError, UserError, one_line, run_cli


class BrokenSample(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DataError("train.nc: input variable(s) ['2t'] contain NaN; fix the file")


def test_error_from_a_dataloader_worker_is_the_workers_own_line():
    loader = DataLoader(BrokenSample(), num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)  # what torch makes of it
    assert one_line(caught.value) == (
        "train.nc: input variable(s) ['2t'] contain NaN; fix the file")


def test_operating_system_errors_name_the_path():
    assert one_line(FileNotFoundError(2, "No such file or directory", "/x/y.nc")) == (
        "/x/y.nc: No such file or directory")
    assert one_line(PermissionError(13, "Permission denied", "/a", None, "/b")) == (
        "/a -> /b: Permission denied")


def test_run_cli_statuses_and_lines():
    lines = []

    def fail(error):
        def job():
            raise error
        return job

    assert run_cli(lambda: None, lines.append) == 0
    assert run_cli(lambda: 3, lines.append) == 3
    assert run_cli(lambda: "a path", lines.append) == 0
    assert run_cli(fail(ConfigError("x=1: use 2\nreally")), lines.append) == 1
    assert run_cli(fail(OSError(28, "No space left on device", "/out")), lines.append) == 1
    assert run_cli(fail(KeyboardInterrupt()), lines.append) == 130
    assert lines == ["error: x=1: use 2 really", "error: /out: No space left on device",
                     "interrupted"]
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_cli(lambda: 1 / 0, lines.append)


def test_every_user_error_type_shares_the_base():
    from helpers.infrastructure import errors

    kinds = [v for v in vars(errors).values() if isinstance(v, type)
             and issubclass(v, Exception) and v.__module__ == errors.__name__]
    assert len(kinds) == 8 and all(issubclass(k, UserError) for k in kinds)
