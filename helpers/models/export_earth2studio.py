"""Export a trained CorrDiff pair as a package Earth2Studio's generic CorrDiff loads and runs.

    python -m helpers.models.export_earth2studio --config-name=config_generate_mini.yaml \\
        ++dataset.data_path=<file.nc> ++dataset.stats_path=<stats.json> \\
        ++generation.io.reg_ckpt_filename=<regression .mdlus> \\
        ++generation.io.res_ckpt_filename=<diffusion .mdlus> \\
        ++export.output_dir=<package directory>

It takes generate.py's config (dataset, checkpoints, sampler, members, seed) plus ``export``:
``output_dir``; ``variable_map`` (our channel -> Earth2Studio name, or ``{name, scale}``; merged
over ``dataset.earth2studio_names``); ``window`` (``[row, col]`` of the full grid, when the
selected samples sit at different places); ``transformed_outputs`` (``rename`` or ``refuse``);
``overwrite``. Load the result with ``CorrDiff.load_model(Package(<dir>))``.
See `helpers.models.earth2studio_package` for how each file keeps the networks' inputs as in
training.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Literal

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from pydantic import Field, ValidationError

from helpers.infrastructure.config_validation import StrictModel, describe_validation_error
from helpers.infrastructure.entry import quiet_library_warnings, run_guarded
from helpers.infrastructure.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DatasetConfigError,
)

logger = logging.getLogger("export")
INFERENCE_MODES = {"all": "both", "regression": "regression", "diffusion": "diffusion"}
# Sampler options Earth2Studio does not pass on, with the values it then uses.
SAMPLER_DEFAULTS = {"rho": 7.0, "S_churn": 0.0, "S_min": 0.0, "S_max": float("inf"),
                    "S_noise": 1.0}


class ExportSection(StrictModel):
    output_dir: str
    variable_map: dict[str, Any] = Field(default_factory=dict)
    window: list[int] | None = Field(None, min_length=2, max_length=2)
    transformed_outputs: Literal["rename", "refuse"] = "rename"
    overwrite: bool = False


def split_config(cfg: DictConfig) -> tuple[Any, ExportSection]:
    """generate.py's config and the validated ``export`` section."""
    from helpers.generation.config import validate_generation_config

    raw = OmegaConf.select(cfg, "export", default=None)
    if raw is None or OmegaConf.select(cfg, "export.output_dir", default=None) is None:
        raise ConfigError("no export.output_dir: say where the package goes with "
                          "++export.output_dir=<directory>")
    try:
        export = ExportSection.model_validate(OmegaConf.to_container(raw, resolve=True))
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, "export")) from None
    config = validate_generation_config(OmegaConf.masked_copy(cfg, ["dataset", "generation"]))
    gen = config.generation
    if not (gen.io.reg_ckpt_filename and gen.io.res_ckpt_filename):
        raise ConfigError("an Earth2Studio package holds both networks: set "
                          "++generation.io.reg_ckpt_filename and "
                          "++generation.io.res_ckpt_filename")
    if gen.patching:
        raise ConfigError("Earth2Studio's CorrDiff samples the whole domain at once, without "
                          "patches; export with generation.patching=false")
    return config, export


def export_package(config: Any, export: ExportSection) -> Path:
    """Check everything, then write the package; returns its directory."""
    from datasets.hrrrmini import HRRRMiniDataset
    from datasets.registry import build_dataset
    from helpers.generation.time_selection import select_time_indices
    from helpers.models import earth2studio_package as package

    gen = config.generation
    output_dir = Path(export.output_dir)
    package.check_destination(output_dir, export.overwrite)
    dataset = build_dataset(config.dataset)
    if not isinstance(dataset, HRRRMiniDataset):
        raise DatasetConfigError(
            f"dataset.type {config.dataset.get('type')!r} cannot be exported yet: the exporter "
            "reads grids, coarse cells and invariants from the HRRR-Mini layout (types "
            "hrrr_mini and synthetic); convert the data with python -m datasets.convert first")
    if dataset.masked_inputs:
        names = [dataset.input_variables[i] for i in dataset.masked_inputs]
        raise DataError(f"input(s) {names} have missing values, which this model reads with "
                        "validity-mask channels; Earth2Studio's CorrDiff has no such channels")
    indices = select_time_indices(dataset.time(), gen.times, gen.times_range)
    row, col = _window(dataset, indices, export.window)
    where = (f"the {dataset.image_shape()} window at row {row}, column {col} of "
             f"{dataset.data_path!r}")
    unknown = np.full(dataset.image_shape(), np.nan)
    lat, lon = dataset.window_latlon(row, col) or (unknown, unknown)
    package.check_output_grid(lat, lon, where)

    mapping = {**package.parse_variable_map(config.dataset.get("earth2studio_names"),
                                            "dataset.earth2studio_names"),
               **package.parse_variable_map(export.variable_map, "export.variable_map")}
    inputs = package.exported_names(dataset.input_variables, mapping, "input")
    outputs = package.exported_names(dataset.output_variables, mapping, "output")
    input_stats, output_stats = dataset.statistics("input"), dataset.statistics("output")
    invariant_names = list(dataset.invariant_variables)
    invariant_stats = dataset.statistics("invariant")
    transformed = [v for v, s in zip(dataset.input_variables + invariant_names,
                                     input_stats + invariant_stats, strict=True)
                   if s.transform != "none"]
    if transformed:
        raise DataError(f"input(s) {transformed} are transformed (stats.json 'transform') before "
                        "normalising; Earth2Studio only z-scores inputs and invariants")

    output_names, output_entries, transforms = _exported_outputs(
        dataset.output_variables, outputs, output_stats, export.transformed_outputs)

    regression, diffusion, hr_mean = _checked_networks(config, dataset)
    if gen.sampler.type == "deterministic" and hr_mean:
        raise ConfigError("Earth2Studio's deterministic sampler cannot condition on the "
                          "regression mean, which this diffusion model needs; export with "
                          "generation.sampler.type=stochastic")

    stats_file = {
        "input": {n.name: package.normalisation(s.mean, s.std, n.scale)
                  for n, s in zip(inputs, input_stats, strict=True)},
        "output": output_entries,
        "invariants": {v: package.normalisation(s.mean, s.std)
                       for v, s in zip(invariant_names, invariant_stats, strict=True)},
    }
    metadata = _metadata(gen, hr_mean, inputs, output_names, invariant_names, input_stats,
                         output_stats, outputs, transforms, regression, diffusion)
    input_lat, input_lon = package.cell_centres(lat, lon, dataset.upsample_factor)
    attributes = {v: s.attributes for v, s in zip(invariant_names, invariant_stats, strict=True)}
    files = {
        "output_latlon_grid.nc": package.grid_dataset(lat, lon, "CorrDiff output grid"),
        "input_latlon_grid.nc": package.grid_dataset(
            input_lat, input_lon, f"coarse input cells ({dataset.upsample_factor}x"
            f"{dataset.upsample_factor} output pixels each) with one ring of cells around"),
        "invariants.nc": package.invariants_dataset(
            dataset.window_invariants(row, col), attributes, lat, lon),
    }
    package.write_package(output_dir, {"regression.mdlus": regression,
                                       "diffusion.mdlus": diffusion},
                          metadata, stats_file, files, export.overwrite)
    logger.info("wrote the Earth2Studio package %s (inputs %s on a %dx%d grid of coarse cells, "
                "outputs %s on %s); load it with CorrDiff.load_model(Package(%r))",
                output_dir.resolve(), [n.name for n in inputs], *input_lat.shape, output_names,
                where, str(output_dir.resolve()))
    return output_dir


def _exported_outputs(ours_names: list[str], outputs: list, output_stats: list,
                      policy: str) -> tuple[list[str], dict, dict]:
    """Earth2Studio's output names, their statistics, and how to invert transformed ones:
    a transformed output goes out in transformed units as ``<name>_<transform>``."""
    from helpers.models import earth2studio_package as package

    output_entries, output_names, transforms = {}, [], {}
    for ours, name, stats in zip(ours_names, outputs, output_stats, strict=True):
        label = name.name
        if stats.transform != "none":
            if policy == "refuse":
                raise DataError(
                    f"output {ours!r} is predicted as {stats.transform}({ours}), which "
                    "Earth2Studio's linear de-normalisation cannot invert; set "
                    "++export.transformed_outputs=rename to export it as "
                    f"{label}_{stats.transform}")
            label = f"{label}_{stats.transform}"
            inverse = package.INVERSE_OF[stats.transform]
            transforms[label] = {"variable": name.name, "transform": stats.transform,
                                 "inverse": inverse, "nonnegative": stats.nonnegative,
                                 "units": stats.attributes.get("units", ""),
                                 "divide_by": name.scale}
            logger.warning("output %r goes out as %r: %s of it, clamped at 0, divided by %g, "
                           "gives %s", ours, label, inverse, name.scale, name.name)
            output_entries[label] = package.normalisation(stats.mean, stats.std)
        else:
            output_entries[label] = package.normalisation(stats.mean, stats.std, name.scale)
        output_names.append(label)
    return output_names, output_entries, transforms


def _window(dataset: Any, indices: list[int], chosen: list[int] | None) -> tuple[int, int]:
    """The window to export: the one given, else the one every selected sample shares."""
    rows, cols = dataset.grid_shape()
    height, width = dataset.image_shape()
    if chosen is not None:
        row, col = chosen
        if not (0 <= row <= rows - height and 0 <= col <= cols - width):
            raise ConfigError(f"export.window={chosen}: a {height}x{width} window there does "
                              f"not fit the {rows}x{cols} grid; choose 0 <= row <= "
                              f"{rows - height} and 0 <= col <= {cols - width}")
        return int(row), int(col)
    coords = dataset.coords()[indices]
    distinct = sorted({(int(r), int(c)) for r, c in coords})
    if len(distinct) > 1:
        raise ConfigError(
            f"the selected samples sit at {len(distinct)} different windows (e.g. "
            f"{[list(w) for w in distinct[:3]]}); Earth2Studio runs one fixed grid: choose it "
            f"with ++export.window=[row,col] or select samples of one window with "
            "generation.times")
    return distinct[0]


def _checked_networks(config: Any, dataset: Any) -> tuple[Path, Path, bool]:
    """Both checkpoints, safety-checked and loaded once to prove they fit the dataset."""
    from helpers.generation.checkpoints import load_diffusion_network, load_regression_checkpoint
    from helpers.models.facts import read_facts
    from helpers.models.networks import resolve_checkpoint

    gen = config.generation
    diffusion_path = resolve_checkpoint(gen.io.res_ckpt_filename,
                                        "generation.io.res_ckpt_filename")
    facts = read_facts(diffusion_path)
    if facts is not None and facts.get("patch_shape"):
        raise CheckpointError(
            f"diffusion checkpoint {str(diffusion_path)!r} was trained on "
            f"{facts['patch_shape']} patches and takes the whole low-res input as extra "
            "channels; Earth2Studio's CorrDiff samples without patches, so it cannot run it")
    from helpers.models.networks import network_lead_time_steps

    regression = load_regression_checkpoint(gen, dataset)
    diffusion, hr_mean = load_diffusion_network(gen, dataset)
    aware = [name for name, net in (("regression", regression), ("diffusion", diffusion))
             if network_lead_time_steps(net) is not None]
    if aware:
        raise CheckpointError(
            f"the {' and '.join(aware)} checkpoint(s) are lead-time-aware (SongUNetPosLtEmbd); "
            "Earth2Studio's CorrDiff gives its networks no lead time, so it cannot run them")
    regression_path = resolve_checkpoint(gen.io.reg_ckpt_filename,
                                         "generation.io.reg_ckpt_filename")
    return regression_path, diffusion_path, hr_mean


def _metadata(gen, hr_mean, inputs, output_names, invariant_names, input_stats, output_stats,
              outputs, transforms, regression, diffusion) -> dict[str, Any]:
    from helpers import __version__

    sampler = gen.sampler
    ignored = {k: getattr(sampler, k) for k, v in SAMPLER_DEFAULTS.items()
               if getattr(sampler, k) != v}
    if ignored:
        logger.warning("Earth2Studio's CorrDiff does not take sampler option(s) %s; it samples "
                       "with %s", ignored, {k: SAMPLER_DEFAULTS[k] for k in ignored})
    metadata = {
        "input_variables": [n.name for n in inputs],
        "output_variables": output_names,
        "invariant_variables": list(invariant_names),
        "number_of_samples": gen.num_ensembles,
        "number_of_steps": sampler.num_steps,
        "solver": sampler.solver if sampler.type == "deterministic" else "heun",
        "sampler_type": sampler.type,
        "inference_mode": INFERENCE_MODES[gen.inference_mode],
        "hr_mean_conditioning": bool(hr_mean),
        "seed": gen.seed,
        "sigma_min": sampler.sigma_min,
        "sigma_max": sampler.sigma_max,
        # Beyond what Earth2Studio reads: what a user needs to feed and read the model right.
        "input_units": {n.name: _units(s, n.scale) for n, s in zip(inputs, input_stats,
                                                                    strict=True)},
        "output_units": {label: (_units(s, n.scale) if label not in transforms else
                                 f"{s.transform}({s.attributes.get('units', '')})")
                         for label, n, s in zip(output_names, outputs, output_stats,
                                                strict=True)},
        "output_transforms": transforms,
        "exported_by": f"corrdiff {__version__} (python -m helpers.models.export_earth2studio)",
        "source_checkpoints": {"regression": str(Path(regression).resolve()),
                               "diffusion": str(Path(diffusion).resolve())},
    }
    if ignored:
        metadata["sampler_options_not_exported"] = ignored
    return metadata


def _units(stats: Any, scale: float) -> str:
    units = stats.attributes.get("units", "")
    return units if scale == 1.0 else f"{units} / {scale:g}"


@hydra.main(version_base=None, config_path="../../conf", config_name="config_generate")
def main(cfg: DictConfig) -> None:
    quiet_library_warnings()

    def job() -> None:
        config, export = split_config(cfg)  # before the slow imports: errors come fast
        export_package(config, export)

    sys.exit(run_guarded(job))


if __name__ == "__main__":
    main()
