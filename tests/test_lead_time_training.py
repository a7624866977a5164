"""Lead-time-aware and cross-entropy CorrDiff training on the GEFS-HRRR layout fixture."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers.infrastructure.distributed import init_distributed
from helpers.infrastructure.errors import ConfigError
from helpers.models.networks import PatchEmbeddingOrder
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from tests.gefs_hrrr_fixtures import tiny_gefs_hrrr_config
from tests.training_fixtures import tiny_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("gefs_hrrr_training")


def make_trainer(config: dict) -> Trainer:
    return Trainer(validate_training_config(copy.deepcopy(config)), init_distributed())


@pytest.fixture(scope="module")
def ce_regression(root, tmp_path_factory):
    """A CE regression trained a few steps, and its checkpoint directory."""
    run = make_trainer(tiny_gefs_hrrr_config(root, tmp_path_factory.mktemp("ce_reg")))
    run.run()
    return run


def test_ce_regression_learns_and_outputs_probabilities(root, tmp_path):
    from physicsnemo.diffusion.metrics import RegressionLossCE

    trainer = make_trainer(tiny_gefs_hrrr_config(root, tmp_path, training_duration=10_000))
    assert isinstance(trainer.loss_fn, RegressionLossCE)
    assert trainer.loss_fn.prob_channels == [3, 4, 5, 6, 7] and trainer.lead_time
    before = trainer.validate()
    for _ in range(25):
        trainer.train_step()
    assert trainer.validate() < 0.8 * before
    clean, lr, label = trainer.dataset[2]
    net = trainer.net.eval()
    with torch.no_grad():
        out = net(torch.zeros(1, *clean.shape), torch.as_tensor(lr)[None],
                  lead_time_label=torch.tensor([label]))
    categories = out[0, 3:]
    assert categories.min() >= 0 and categories.max() <= 1
    torch.testing.assert_close(categories.sum(0), torch.ones(clean.shape[1:]), atol=1e-5,
                               rtol=0)


def test_the_lead_time_label_conditions_the_network(root, tmp_path):
    trainer = make_trainer(tiny_gefs_hrrr_config(root, tmp_path, training_duration=10_000))
    for _ in range(10):  # a new network's output is near zero whatever its input
        trainer.train_step()
    clean, lr, _ = trainer.dataset[0]
    net = trainer.net.eval()
    with torch.no_grad():
        outputs = [net(torch.zeros(1, *clean.shape), torch.as_tensor(lr)[None],
                       lead_time_label=torch.tensor([k])) for k in range(3)]
    for a, b in ((0, 1), (1, 2)):
        assert (outputs[a] - outputs[b]).abs().max() > 1e-3 * outputs[a].abs().max()
    # The labels reach the loss: the dataset's labels and other labels give other losses.
    batch = [trainer.dataset[i] for i in range(4)]
    img_clean = torch.stack([torch.as_tensor(c) for c, _, _ in batch])
    img_lr = torch.stack([torch.as_tensor(x) for _, x, _ in batch])
    labels = torch.tensor([lab for _, _, lab in batch])
    assert labels.tolist() == [0, 1, 2, 0]
    with torch.no_grad():
        right = trainer._per_sample_loss(img_clean, img_lr, [0, 1, 2, 3], (0, 0),
                                         lead_time_label=labels)
        wrong = trainer._per_sample_loss(img_clean, img_lr, [0, 1, 2, 3], (0, 0),
                                         lead_time_label=(labels + 1) % 3)
    assert not torch.allclose(right, wrong, rtol=1e-3)


def test_patched_lead_time_diffusion_trains_with_patches_in_the_right_order(
        root, tmp_path, ce_regression):
    config = tiny_gefs_hrrr_config(root, tmp_path, name="lt_aware_patched_diffusion",
                                   training_duration=10_000, patch_shape_x=16, patch_shape_y=8,
                                   patch_num=3)
    config["training"]["io"]["regression_checkpoint_path"] = str(ce_regression.store.directory)
    trainer = make_trainer(config)
    assert trainer.lead_time and trainer.patching.patch_num == 3
    before = trainer.validate()
    for _ in range(30):
        trainer.train_step()
    assert trainer.validate() < before

    # Two images x three patches, patch-major as physicsnemo lays them out: each patch must
    # get its own position and its own image's lead time, as when run image by image.
    net = trainer.net.eval()
    wrapped = PatchEmbeddingOrder(net)
    patching = trainer.patching
    patching.reset_patch_indices(generator=torch.Generator().manual_seed(3))
    images, patches = 2, 3
    n_cond = net.img_in_channels - 4 - 4  # minus positional and lead-time embedding channels
    x = torch.randn(patches * images, net.img_out_channels, 8, 16)
    cond = torch.randn(patches * images, n_cond, 8, 16)
    sigma = torch.rand(patches * images, 1, 1, 1) + 0.5
    labels = torch.tensor([2, 0])
    index = patching.global_index(images)
    with torch.no_grad():
        together = wrapped(x, cond, sigma, global_index=index, lead_time_label=labels)
        for b in range(images):
            rows = torch.arange(patches) * images + b
            alone = net(x[rows], cond[rows], sigma[rows], global_index=index,
                        lead_time_label=labels[b:b + 1])
            torch.testing.assert_close(together[rows], alone, atol=1e-5, rtol=1e-5)


def test_lead_time_misconfigurations_are_refused(root, tmp_path):
    config = tiny_gefs_hrrr_config(root, tmp_path)
    config["model"]["model_args"]["lead_time_steps"] = 2
    with pytest.raises(ConfigError, match=r"embeds 2 lead times .*lead_time_steps=3"):
        make_trainer(config)
    plain = tiny_config(tmp_path / "synthetic", tmp_path / "run")
    plain["model"] = tiny_gefs_hrrr_config(root, tmp_path)["model"]
    with pytest.raises(ConfigError, match="the dataset has no lead times"):
        make_trainer(plain)
    no_categories = tiny_gefs_hrrr_config(root, tmp_path)
    no_categories["dataset"].update(prob_variables=[], output_variables=["u10m", "t2m"])
    with pytest.raises(ConfigError, match="the dataset has none"):
        make_trainer(no_categories)
    wrong_family = tiny_gefs_hrrr_config(root, tmp_path, name="regression")
    with pytest.raises(ConfigError, match=r"needs a lead-time-aware model\.name"):
        make_trainer(wrong_family)
    missing_type = tiny_gefs_hrrr_config(root, tmp_path)
    missing_type["model"]["model_args"]["model_type"] = "SongUNetPosEmbd"
    with pytest.raises(ConfigError, match="is lead-time-aware: set"):
        make_trainer(missing_type)


def test_learnable_positional_grid_is_trained(root, tmp_path):
    """gridtype: learnable (the GEFS-HRRR diffusion preset's 100 channels): the grid is a
    parameter the optimizer updates, and the conditioning channels count it."""
    config = tiny_gefs_hrrr_config(root, tmp_path, training_duration=10_000)
    config["model"]["model_args"].update(gridtype="learnable", N_grid_channels=100)
    trainer = make_trainer(config)
    grid = trainer.net.model.pos_embd
    assert isinstance(grid, torch.nn.Parameter) and grid.shape == (100, 16, 32)
    assert trainer.net.img_in_channels == 6 + 100 + 4  # inputs, grid, lead-time embedding
    before = grid.detach().clone()
    for _ in range(3):
        trainer.train_step()
    assert not torch.equal(before, trainer.net.model.pos_embd.detach())


def test_a_lead_time_checkpoint_saved_elsewhere_generates(root, tmp_path):
    """A CE regression built and saved with physicsnemo alone, as the reference's GEFS-HRRR
    training writes it (no facts file): generation finds its lead-time embedding and category
    probabilities from the network itself."""
    import xarray as xr
    from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet

    from helpers.generation.config import validate_generation_config
    from helpers.generation.ensemble import EnsembleGenerator

    net = CorrDiffRegressionUNet(
        img_in_channels=6 + 4 + 4, img_out_channels=8, img_resolution=[16, 32],
        model_type="SongUNetPosLtEmbd", model_channels=8, channel_mult=[1, 2], num_blocks=1,
        attn_resolutions=[], N_grid_channels=4, embedding_type="zero", lead_time_channels=4,
        lead_time_steps=3, prob_channels=[3, 4, 5, 6, 7])
    checkpoint = tmp_path / "UNet.0.100.mdlus"
    net.save(str(checkpoint))
    dataset = {**tiny_gefs_hrrr_config(root, tmp_path)["dataset"], "train": False}
    output = tmp_path / "reference.nc"
    config = validate_generation_config({"dataset": dataset, "generation": {
        "inference_mode": "regression", "times": ["2022010100f03", "2022070106f06"],
        "io": {"reg_ckpt_filename": str(checkpoint), "output_filename": str(output)}}})
    generator = EnsembleGenerator(config, init_distributed())
    assert generator.lead_time
    generator.run()
    with xr.open_dataset(output, group="prediction") as pred:
        categories = sum(pred[c].values for c in ("cat_snow", "cat_ice", "cat_freez",
                                                  "cat_rain", "cat_none"))
    torch.testing.assert_close(torch.as_tensor(categories), torch.ones_like(
        torch.as_tensor(categories)), atol=1e-5, rtol=0)
    with xr.open_dataset(output) as root_group:
        assert root_group["lead_time"].values.astype("timedelta64[h]").astype(int).tolist() \
            == [3, 6]
