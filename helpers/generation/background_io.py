"""Reading the next samples and writing the finished ones beside the networks' work."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datasets.base import PhysicalSample
from inference.generated_file import EnsembleWriter

logger = logging.getLogger("generate")


class BackgroundIO:
    """Reads the next samples and writes the finished ones in one background thread, so the
    network does not wait on NetCDF; one thread, so the NetCDF/HDF5 library is only ever used
    from one place at a time. At most one read and one write are in flight."""

    def __init__(self, dataset: Any, indices: list[int]):
        from concurrent.futures import ThreadPoolExecutor

        self.dataset, self.indices = dataset, indices
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation-io")
        self.reading = None
        self.writing = None

    def prefetch(self, group: list[int]) -> None:
        self.reading = self.pool.submit(
            lambda: [self.dataset.sample_in_both_units(self.indices[k]) for k in group])

    def samples(self) -> list[tuple[tuple, PhysicalSample]]:
        return self.reading.result()

    def write(self, writer: EnsembleWriter, group: list[int], results: list, parts: list,
              num_members: int) -> None:
        if self.writing is not None:
            self.writing.result()  # the previous write's errors surface here

        def write_group() -> None:
            for g, (k, (inputs, truth, _)) in enumerate(zip(group, results, strict=True)):
                members = {m: v for part in parts for m, v in part[g].items()}
                prediction = np.stack([members[m] for m in range(num_members)])
                writer.write_time(k, inputs, truth, prediction.astype(np.float32))

        self.writing = self.pool.submit(write_group)

    def __enter__(self) -> BackgroundIO:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        """Finished times are always written, even when generation stops on an error or an
        interrupt (a resumed run then skips them); an unneeded read is dropped."""
        if self.reading is not None:
            self.reading.cancel()
        try:
            if self.writing is not None:
                self.writing.result()
        except Exception:
            if exc_type is None:
                raise
            logger.exception("writing the last finished time(s) failed as well")
        finally:
            self.pool.shutdown(wait=True)
