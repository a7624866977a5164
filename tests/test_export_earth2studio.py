"""The Earth2Studio export: package pieces, the command line, and Earth2Studio running it.

The last tests need Earth2Studio, which lives in its own venv (``make test-earth2studio`` builds
it and sets CORRDIFF_EARTH2STUDIO_PYTHON; CI runs that target after ``make test``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from datasets.interpolation import upsample_bilinear
from helpers.infrastructure.errors import CheckpointError, ConfigError, DataError
from helpers.models import earth2studio_package as package
from tests.conftest import one_error_line
from tests.earth2studio_fixtures import (
    dataset_section,
    export_command,
    run,
    train_pair,
    write_fixture,
)

E2S_PYTHON = os.environ.get("CORRDIFF_EARTH2STUDIO_PYTHON")
needs_earth2studio = pytest.mark.skipif(
    not E2S_PYTHON, reason="Earth2Studio runs in its own venv: make test-earth2studio")


# ------------------------------------------------------------------------------ package pieces

def test_variable_map_takes_names_and_unit_scales():
    parsed = package.parse_variable_map({"2t": "t2m", "tp": {"name": "tp", "scale": 1000}}, "m")
    assert parsed == {"2t": package.ExportedName("t2m"),
                      "tp": package.ExportedName("tp", 1000.0)}
    with pytest.raises(ConfigError, match=r"m.tp.scale=-1 must be a positive number"):
        package.parse_variable_map({"tp": {"name": "tp", "scale": -1}}, "m")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['units'\]"):
        package.parse_variable_map({"tp": {"name": "tp", "units": "m"}}, "m")
    with pytest.raises(ConfigError, match=r"must be an Earth2Studio variable name"):
        package.parse_variable_map({"tp": 3}, "m")


def test_every_name_needs_a_mapping_and_its_own_target():
    mapping = package.parse_variable_map({"10u": "u10m", "10v": "u10m"}, "m")
    with pytest.raises(ConfigError) as err:
        package.exported_names(["10u", "2t", "sst"], mapping, "input")
    assert "input variable(s) ['2t', 'sst'] have no Earth2Studio name" in str(err.value)
    assert "++export.variable_map={2t:<name>,sst:<name>}" in str(err.value)
    with pytest.raises(ConfigError, match=r"which repeat \['u10m'\]"):
        package.exported_names(["10u", "10v"], mapping, "output")


def test_unit_scale_folds_into_the_z_score():
    entry = package.normalisation(mean=0.5, std=1.2, scale=1000.0)
    theirs = np.array([0.0, 0.0007, 0.003])  # metres per hour
    ours = 1000.0 * theirs                     # mm per hour
    np.testing.assert_allclose((theirs - entry["mean"]) / entry["std"], (ours - 0.5) / 1.2)


def test_input_grid_is_the_block_centres_with_one_ring_more():
    yy, xx = np.meshgrid(np.arange(8), np.arange(12), indexing="ij")
    lat, lon = 40.0 + 0.5 * yy + 0.25 * xx, 10.0 + 0.5 * xx - 0.25 * yy
    lat_c, lon_c = package.cell_centres(lat, lon, factor=4)
    assert lat_c.shape == lon_c.shape == (2 + 2, 3 + 2)
    cy, cx = np.meshgrid(np.arange(-1, 3) * 4 + 1.5, np.arange(-1, 4) * 4 + 1.5, indexing="ij")
    np.testing.assert_allclose(lat_c, 40.0 + 0.5 * cy + 0.25 * cx)
    np.testing.assert_allclose(lon_c, 10.0 + 0.5 * cx - 0.25 * cy)


def index_space_bilinear(padded: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Earth2Studio's interpolation from the padded cell grid, written out: fine pixel r sits
    at cell index (r + 0.5) / factor + 0.5 of the padded grid."""
    i = (np.arange(shape[0]) + 0.5) / factor + 0.5
    j = (np.arange(shape[1]) + 0.5) / factor + 0.5
    i0, j0 = np.floor(i).astype(int), np.floor(j).astype(int)
    di, dj = (i - i0)[:, None], (j - j0)[None, :]
    f = padded[..., i0[:, None], j0[None, :]] * (1 - di) * (1 - dj)
    f += padded[..., i0[:, None], j0[None, :] + 1] * (1 - di) * dj
    f += padded[..., i0[:, None] + 1, j0[None, :]] * di * (1 - dj)
    return f + padded[..., i0[:, None] + 1, j0[None, :] + 1] * di * dj


def test_the_padded_cells_give_exactly_the_training_input():
    coarse = np.random.default_rng(0).gamma(1.5, 2.0, (3, 5, 6)).astype(np.float32)
    padded = package.pad_like_training(coarse)
    assert padded.shape == (3, 7, 8)
    np.testing.assert_array_equal(padded[:, 1:-1, 1:-1], coarse)
    np.testing.assert_allclose(index_space_bilinear(padded, 4, (20, 24)),
                               upsample_bilinear(coarse, 4), rtol=0, atol=1e-5)
    # Without our range limit on the ring (Earth2Studio's own padding would be linear), the
    # edge pixels differ: the ring is what makes them agree.
    assert not np.allclose(index_space_bilinear(package.pad_linear(coarse), 4, (20, 24)),
                           upsample_bilinear(coarse, 4), atol=1e-3)


def test_output_grids_earth2studio_cannot_run_are_refused():
    yy, xx = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    with pytest.raises(DataError, match=r"regular \(rectilinear\) lat/lon grid"):
        package.check_output_grid(30 + yy, 100 + xx, "w")
    with pytest.raises(DataError, match=r"crosses the antimeridian"):
        package.check_output_grid(30 + yy + 0.1 * xx, 178 + 120 * xx, "w")
    with pytest.raises(DataError, match=r"has no lat/lon grid"):
        package.check_output_grid(np.full((4, 4), np.nan), 100 + xx, "w")
    package.check_output_grid(30 + yy + 0.1 * xx, 100 + xx - 0.1 * yy, "w")  # curvilinear


# ------------------------------------------------------------------------------ command line

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("e2s_export")
    files = write_fixture(directory)
    return files, train_pair(files, directory / "run")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    files, checkpoints = trained
    output_dir = tmp_path_factory.mktemp("e2s_out") / "package"
    result = run(export_command(files, checkpoints, output_dir))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return output_dir, result.stdout + result.stderr


def test_export_writes_the_package_earth2studio_reads(trained, exported):
    files, checkpoints = trained
    output_dir, log = exported
    assert sorted(p.name for p in output_dir.iterdir()) == sorted(package.PACKAGE_FILES)
    assert f"wrote the Earth2Studio package {output_dir.resolve()}" in log
    assert not list(output_dir.parent.glob(".package.partial-*"))
    for name, source in (("regression.mdlus", "regression"), ("diffusion.mdlus", "diffusion")):
        assert (output_dir / name).read_bytes() == Path(checkpoints[source]).read_bytes()

    metadata = json.loads((output_dir / "metadata.json").read_text())
    assert metadata["input_variables"] == ["u10m", "t2m", "tcwv"]
    assert metadata["output_variables"] == ["u10m", "t2m"]
    assert metadata["invariant_variables"] == ["elev_mean", "lsm_mean"]
    assert (metadata["number_of_samples"], metadata["number_of_steps"]) == (3, 4)
    assert (metadata["sampler_type"], metadata["inference_mode"]) == ("stochastic", "both")
    assert metadata["hr_mean_conditioning"] is True  # from the facts saved with the model
    assert metadata["seed"] == 0

    stats = json.loads((output_dir / "stats.json").read_text())
    source = json.loads(files["stats"].read_text())
    assert stats["input"]["t2m"] == pytest.approx(
        {k: source["input"]["2t"][k] for k in ("mean", "std")})
    assert stats["invariants"]["elev_mean"]["std"] == pytest.approx(
        source["invariant"]["elev_mean"]["std"])

    with xr.open_dataset(files["valid"]) as root:
        row, col = (int(v) for v in root["coord"].values[0])
        lat = root["lat"].values[row:row + 16, col:col + 16]
    with xr.open_dataset(output_dir / "output_latlon_grid.nc") as grid:
        np.testing.assert_array_equal(grid["lat"].values, lat)
    with xr.open_dataset(output_dir / "input_latlon_grid.nc") as grid:
        assert grid["lat"].shape == (16 // 4 + 2, 16 // 4 + 2)
        np.testing.assert_allclose(grid["lat"].values[1:-1, 1:-1],
                                   lat.reshape(4, 4, 4, 4).mean(axis=(1, 3)))
    with xr.open_dataset(files["valid"], group="invariant") as invariant, \
            xr.open_dataset(output_dir / "invariants.nc") as exported_invariants:
        np.testing.assert_array_equal(
            exported_invariants["elev_mean"].values,
            invariant["elev_mean"].values[row:row + 16, col:col + 16].astype(np.float32))


def test_unmapped_name_is_refused_and_nothing_written(trained, tmp_path):
    files, checkpoints = trained
    command = export_command(files, checkpoints, tmp_path / "pkg")
    command = [c for c in command if not c.startswith("++export.variable_map")]
    command.append("~dataset.earth2studio_names")  # the HRRR-Mini config maps these names
    error = one_error_line(run(command))
    assert "input variable(s) ['10u', '2t', 'tcwv'] have no Earth2Studio name" in error
    assert not (tmp_path / "pkg").exists()
    assert list(tmp_path.iterdir()) == []


def test_an_existing_package_is_kept_unless_overwrite(trained, tmp_path):
    files, checkpoints = trained
    target = tmp_path / "pkg"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    error = one_error_line(run(export_command(files, checkpoints, target)))
    assert "already exists and is not empty" in error and "++export.overwrite=true" in error
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def export_in_process(trained, output_dir: Path, dataset: dict | None = None, **export):
    """The exporter's checks without a process start (the command line runs it above)."""
    from helpers.generation.config import validate_generation_config
    from helpers.models.export_earth2studio import ExportSection, export_package

    files, checkpoints = trained
    config = validate_generation_config({
        "dataset": dataset or dataset_section(files),
        "generation": {"num_ensembles": 2, "io": {
            "reg_ckpt_filename": checkpoints["regression"],
            "res_ckpt_filename": checkpoints["diffusion"], "output_filename": "unused.nc"}}})
    section = ExportSection(output_dir=str(output_dir),
                            variable_map={"10u": "u10m", "2t": "t2m", "tcwv": "tcwv"}, **export)
    return export_package(config, section)


def test_samples_at_several_windows_need_a_chosen_one(trained, tmp_path):
    files, _ = trained
    training_windows = dataset_section(files, "train")
    with pytest.raises(ConfigError, match=r"different windows .*\+\+export.window=\[row,col\]"):
        export_in_process(trained, tmp_path / "a", dataset=training_windows)
    with pytest.raises(ConfigError, match=r"export.window=\[20, 0\]: a 16x16 window there does "
                                          r"not fit the 24x32 grid"):
        export_in_process(trained, tmp_path / "b", dataset=training_windows, window=[20, 0])
    export_in_process(trained, tmp_path / "c", dataset=training_windows, window=[8, 16])
    with xr.open_dataset(files["train"]) as root, \
            xr.open_dataset(tmp_path / "c" / "output_latlon_grid.nc") as grid:
        np.testing.assert_array_equal(grid["lon"].values, root["lon"].values[8:24, 16:32])


def test_transformed_outputs_go_out_renamed_or_are_refused(trained, tmp_path):
    files, _ = trained
    stats = json.loads(files["stats"].read_text())
    stats["output"]["2t"]["transform"] = "sqrt"
    transformed = tmp_path / "stats.json"
    transformed.write_text(json.dumps(stats))
    dataset = {**dataset_section(files), "stats_path": str(transformed)}
    with pytest.raises(DataError, match=r"output '2t' is predicted as sqrt\(2t\)"):
        export_in_process(trained, tmp_path / "a", dataset=dataset,
                          transformed_outputs="refuse")
    export_in_process(trained, tmp_path / "b", dataset=dataset)
    metadata = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert metadata["output_variables"] == ["u10m", "t2m_sqrt"]
    assert metadata["output_transforms"]["t2m_sqrt"]["inverse"] == "square"
    saved = json.loads((tmp_path / "b" / "stats.json").read_text())["output"]["t2m_sqrt"]
    assert saved == pytest.approx({k: stats["output"]["2t"][k] for k in ("mean", "std")})


def test_patch_trained_diffusion_is_refused(trained, tmp_path):
    from helpers.models.facts import facts_path

    files, checkpoints = trained
    source = Path(checkpoints["diffusion"])
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    facts = json.loads(facts_path(source).read_text())
    facts_path(copy).write_text(json.dumps({**facts, "patch_shape": [8, 8]}))
    with pytest.raises(CheckpointError, match=r"trained on \[8, 8\] patches .* cannot run it"):
        export_in_process((files, {**checkpoints, "diffusion": str(copy)}), tmp_path / "p")
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------------------ Earth2Studio

def coarse_input(path: Path, sample: int) -> np.ndarray:
    with xr.open_dataset(path, group="input") as group:
        return np.stack([group[v].values[sample] for v in ("10u", "2t", "tcwv")]).astype(
            np.float32)


def run_in_earth2studio(package_dir: Path, coarse: np.ndarray, tmp_path: Path,
                        *flags: str) -> np.ndarray:
    np.save(tmp_path / "input.npy", package.pad_like_training(coarse))
    result = run([E2S_PYTHON, "tests/earth2studio_runner.py", str(package_dir),
                  str(tmp_path / "input.npy"), str(tmp_path / "output.npy"), *flags])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return np.load(tmp_path / "output.npy")


@needs_earth2studio
def test_earth2studio_regression_equals_generate_py(trained, exported, tmp_path):
    files, checkpoints = trained
    output_dir, _ = exported
    ours_file = tmp_path / "ours.nc"
    result = run([sys.executable, "generate.py", "--config-name=config_generate_mini.yaml",
                  f"++dataset.data_path={files['valid']}",
                  f"++dataset.stats_path={files['stats']}",
                  f"++generation.io.reg_ckpt_filename={checkpoints['regression']}",
                  "++generation.inference_mode=regression",
                  f"++generation.io.output_filename={ours_file}"])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    stats = json.loads(files["stats"].read_text())["output"]
    for sample in (0, 1):
        theirs = run_in_earth2studio(output_dir, coarse_input(files["valid"], sample), tmp_path,
                                     "--regression")
        assert theirs.shape == (1, 2, 16, 16)
        with xr.open_dataset(ours_file, group="prediction") as prediction:
            for k, (ours_name, name) in enumerate((("10u", "u10m"), ("2t", "t2m"))):
                ours = prediction[ours_name].values[0, sample]
                scale = stats[ours_name]["std"]
                difference = np.abs(theirs[0, k] - ours).max() / scale
                assert difference < 1e-4, (name, difference)


@needs_earth2studio
def test_earth2studio_corrdiff_gives_an_ensemble(trained, exported, tmp_path):
    files, _ = trained
    output_dir, _ = exported
    members = run_in_earth2studio(output_dir, coarse_input(files["valid"], 0), tmp_path)
    assert members.shape == (3, 2, 16, 16)
    assert np.isfinite(members).all()
    spread = members.std(axis=0).mean(axis=(-2, -1))
    assert (spread > 1e-3).all(), spread


def test_shipped_dataset_configs_map_their_channels():
    """The embedded dataset's config maps every channel (so its models export without
    options); the HRRR-Mini config maps the ERA5 surface names."""
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    synthetic = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/dataset/synthetic.yaml"))
    mapping = package.parse_variable_map(synthetic["earth2studio_names"], "m")
    names = package.exported_names(["10u", "10v", "2t", "tp", "tcwv", "msl"], mapping, "input")
    assert [n.name for n in names] == ["u10m", "v10m", "t2m", "tp", "tcwv", "msl"]
    assert mapping["tp"].scale == 1000.0 and mapping["2t"].scale == 1.0
    hrrr = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/dataset/hrrrmini.yaml"))
    assert package.parse_variable_map(hrrr["earth2studio_names"], "m")["sp"].name == "sp"
