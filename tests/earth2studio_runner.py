"""Run an exported package in Earth2Studio; executed by the Earth2Studio venv's python.

    .venv-e2s/bin/python tests/earth2studio_runner.py PACKAGE INPUT.npy OUTPUT.npy [--regression]

INPUT holds ``[C, H_in, W_in]`` on the package's input grid (``input_latlon_grid.nc``);
OUTPUT receives ``[samples, C_out, H, W]``. ``--regression`` runs the deterministic part only
(the regression mean, one sample). The loader is Earth2Studio's own, untouched; this script
imports nothing from this project, which is not installed in that venv.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict

import numpy as np
import torch
from earth2studio.models.auto import Package
from earth2studio.models.dx import CorrDiff


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("package")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--regression", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = CorrDiff.load_model(Package(args.package), device="cpu")
    if args.regression:
        model.inference_mode = "regression"
        model.number_of_samples = 1
    x = torch.as_tensor(np.load(args.input))[None]
    inputs = model.input_coords()
    coords = OrderedDict(batch=np.zeros(1), variable=inputs["variable"], lat=inputs["lat"],
                         lon=inputs["lon"])
    out, out_coords = model(x, coords)
    np.save(args.output, out[0].numpy())
    summary = {"dims": list(out_coords), "variables": [str(v) for v in out_coords["variable"]],
               "shape": list(out.shape), "samples": int(model.number_of_samples)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
