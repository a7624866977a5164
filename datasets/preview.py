"""Look at a dataset before training on it: print its channels, grid and times, and draw one
sample (coarse input interpolated to the fine grid next to the high-res truth) as a PNG.

    python -m datasets.preview conf/dataset/synthetic.yaml data_path=data/synthetic/valid.nc \
        --index 0 --out outputs/dataset_preview.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from datasets.base import DownscalingDataset
from datasets.registry import build_dataset
from helpers.infrastructure.atomic_write import atomic_path
from helpers.infrastructure.errors import UsageError, run_cli

logger = logging.getLogger("datasets.preview")


def describe(dataset: DownscalingDataset) -> str:
    """A few lines a person can read to check the dataset is what they expect."""
    times = dataset.time()
    lat = dataset.latitude()
    lines = [
        f"{type(dataset).__name__}: {len(dataset)} samples on a {dataset.image_shape()} grid",
        f"  times: {times[0]:%Y-%m-%d %H:%M} .. {times[-1]:%Y-%m-%d %H:%M}" if times else "",
        "  input channels:  " + ", ".join(
            c.label + (" (aux)" if c.auxiliary else "") for c in dataset.input_channels()
        ),
        "  output channels: " + ", ".join(c.label for c in dataset.output_channels()),
    ]
    if np.isfinite(lat).all():
        lon = dataset.longitude()
        lines.append(
            f"  lat {lat.min():.2f}..{lat.max():.2f} N, lon {lon.min():.2f}..{lon.max():.2f} E"
        )
    return "\n".join(line for line in lines if line)


def plot_sample(dataset: DownscalingDataset, index: int, out: Path) -> Path:
    """Draw input (same-named channel where there is one) and truth per output channel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, inputs = dataset.physical_sample(index)
    in_index = {c.label: i for i, c in enumerate(dataset.input_channels())}
    channels = dataset.output_channels()
    fig, axes = plt.subplots(2, len(channels), figsize=(3.2 * len(channels), 6), squeeze=False)
    for col, channel in enumerate(channels):
        field = truth[col]
        finite = field[np.isfinite(field)]  # masked data: NaN outside the mask
        vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        panels = [("truth", field)]
        if channel.label in in_index:
            panels.insert(0, ("input (interpolated)", inputs[in_index[channel.label]]))
        for row in range(2):
            ax = axes[row, col]
            if row >= len(panels):
                ax.axis("off")
                continue
            title, values = panels[row]
            image = ax.imshow(values, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
            units = f" [{channel.units}]" if channel.units else ""
            ax.set_title(f"{channel.label}{units}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"sample {index}, {dataset.time()[index]:%Y-%m-%d %H:%M}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, ".tmp.png") as temporary:
        fig.savefig(temporary, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a dataset config, e.g. conf/dataset/synthetic.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the dataset config")
    parser.add_argument("--index", type=int, default=0, help="sample to draw")
    parser.add_argument("--out", type=Path, default=Path("outputs/dataset_preview.png"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    def job() -> None:
        config = OmegaConf.merge(
            OmegaConf.load(args.config), OmegaConf.from_dotlist(args.overrides)
        )
        dataset = build_dataset(config)
        print(describe(dataset))
        if not 0 <= args.index < len(dataset):
            raise UsageError(f"--index {args.index} is outside 0..{len(dataset) - 1}; choose a "
                             "sample in that range")
        path = plot_sample(dataset, args.index, args.out)
        logger.info("Wrote sample plot to %s", path.resolve())

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
