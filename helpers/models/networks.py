"""Building the CorrDiff networks from physicsnemo and loading the frozen regression model.

The channel bookkeeping lives here: physicsnemo's wrappers take ``img_in_channels`` as every
conditioning channel the inner UNet sees besides the noisy/zero state, including the positional
embedding channels, the regression mean (``hr_mean_conditioning``) and, for patch training, the
whole low-res input resized to the patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from helpers.infrastructure.errors import CheckpointError, ConfigError
from helpers.models.config import ModelConfig

SONG_UNETS = {"SongUNet", "SongUNetPosEmbd", "SongUNetPosLtEmbd"}
POSITIONAL_UNETS = {"SongUNetPosEmbd", "SongUNetPosLtEmbd"}


def embedding_channels(model_args: dict[str, Any]) -> int:
    """Positional- and lead-time-embedding channels the UNet appends to its input."""
    model_type = model_args.get("model_type", "SongUNetPosEmbd")
    if model_type not in POSITIONAL_UNETS:
        return 0
    lead_time = int(model_args.get("lead_time_channels") or 0) if (
        model_type == "SongUNetPosLtEmbd") else 0
    return int(model_args.get("N_grid_channels", 4)) + lead_time


def network_embedding_channels(net: torch.nn.Module) -> int:
    """`embedding_channels` of a built network (a regression UNet or EDM wrapper)."""
    inner = getattr(net, "model", None)
    return embedding_channels({
        "model_type": type(inner).__name__,
        "N_grid_channels": getattr(inner, "N_grid_channels", 0) or 0,
        "lead_time_channels": getattr(inner, "lead_time_channels", 0) or 0})


def network_lead_time_steps(net: torch.nn.Module) -> int | None:
    """Lead-time steps a lead-time-aware network embeds; None for any other network."""
    inner = getattr(net, "model", None)
    if type(inner).__name__ != "SongUNetPosLtEmbd":
        return None
    return int(inner.lead_time_steps)


def conditioning_channels(model: ModelConfig, n_input: int, n_output: int) -> int:
    """``img_in_channels`` of the network described by ``model``."""
    channels = n_input + embedding_channels(model.model_args)
    if not model.is_regression and model.hr_mean_conditioning:
        channels += n_output
    if model.is_patched:
        channels += n_input
    return channels


def check_lead_times(steps: int, dataset: Any, what: str) -> None:
    """A lead-time-aware network embedding ``steps`` lead times needs a forecast dataset whose
    labels it can embed."""
    hours = dataset.lead_time_hours()
    if hours is None:
        raise ConfigError(f"{what} is lead-time-aware (SongUNetPosLtEmbd) but the "
                          "dataset has no lead times; use a forecast dataset (e.g. gefs_hrrr) "
                          "or a model without lead time")
    if steps < len(hours):
        raise ConfigError(f"{what} embeds {steps} lead times (lead_time_steps) but the dataset "
                          f"has {len(hours)} ({hours} h); set "
                          f"model.model_args.lead_time_steps={len(hours)}")


def check_spatial_size(shape: Sequence[int], model_args: dict[str, Any], what: str,
                       fix: str = "") -> None:
    """The UNet halves the grid ``len(channel_mult) - 1`` times, so each side must be a
    multiple of ``2**(levels - 1)`` (a smaller side, even a power of two, fails inside it).
    ``fix`` ends the message with the remedy."""
    levels = len(model_args.get("channel_mult", [1, 2, 2, 2, 2]))
    multiple = 2 ** (levels - 1)
    for side in shape:
        if side <= 0 or side % multiple:
            smaller = side - side % multiple
            choices = (f"e.g. {smaller} or {smaller + multiple}" if smaller else
                       f"e.g. {multiple}, or fewer levels in model.model_args.channel_mult")
            raise ConfigError(
                f"{what} {tuple(shape)} is not supported by a UNet with {levels} levels "
                f"(channel_mult): each side must be a multiple of {multiple}; {choices}"
                + (f"; {fix.format(multiple=multiple)}" if fix else "")
            )


def check_patch_shape(patch_shape: Sequence[int], image_shape: Sequence[int],
                      model_args: dict[str, Any], option: str) -> None:
    """A patch must fit the image and be a size the UNet can take."""
    if patch_shape[0] > image_shape[0] or patch_shape[1] > image_shape[1]:
        raise ConfigError(
            f"{option}={tuple(patch_shape)} is larger than the {tuple(image_shape)} image; use "
            "at most the image size"
        )
    check_spatial_size(patch_shape, model_args, option)


def apex_group_norm(option: bool | None, device: torch.device, what: str) -> bool:
    """Whether the networks use NVIDIA Apex's GroupNorm (``None``: where it can, i.e. on a CUDA
    device with Apex importable)."""
    import importlib.util

    available = device.type == "cuda" and importlib.util.find_spec("apex") is not None
    if option and not available:
        raise ConfigError(f"{what}=true needs NVIDIA Apex on a CUDA GPU and this run has "
                          f"{'no Apex' if device.type == 'cuda' else 'no CUDA device'}; "
                          f"set {what}=null (GroupNorm then runs without Apex)")
    return available if option is None else option


def build_network(model: ModelConfig, image_shape: Sequence[int], n_input: int, n_output: int,
                  checkpoint_level: int = 0, use_apex_gn: bool = False,
                  prob_channels: Sequence[int] = ()) -> torch.nn.Module:
    """A new regression UNet or EDM-preconditioned diffusion network; ``prob_channels`` are
    the category channels a cross-entropy regression outputs as probabilities."""
    args = dict(model.model_args)
    args.setdefault("model_type", "SongUNetPosEmbd")
    if model.cross_entropy:
        if not prob_channels:
            raise ConfigError(f"model.name={model.name} trains category channels with "
                              "cross-entropy but the dataset has none (e.g. gefs_hrrr's "
                              "prob_variables); use model.name=lt_aware_regression")
        args["prob_channels"] = [int(c) for c in prob_channels]
    if checkpoint_level and args["model_type"] in SONG_UNETS:
        args["checkpoint_level"] = checkpoint_level
    if use_apex_gn and args["model_type"] in SONG_UNETS:
        args["use_apex_gn"] = True
    check_spatial_size(image_shape, args, "the dataset's image shape",
                       "convert the data again with python -m datasets.convert and a --window "
                       "that is a multiple of {multiple} (for whole domains: --window full "
                       "--crop {multiple}), or use fewer levels in model.model_args.channel_mult")
    common = dict(
        img_resolution=[int(s) for s in image_shape],
        img_in_channels=conditioning_channels(model, n_input, n_output),
        img_out_channels=n_output,
    )
    try:
        if model.is_regression:
            from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet

            return CorrDiffRegressionUNet(**common, **args)
        from physicsnemo.diffusion.preconditioners import EDMPrecondSuperResolution

        if args["model_type"] not in POSITIONAL_UNETS:
            raise ConfigError(
                f"model.model_args.model_type={args['model_type']} cannot be trained as a "
                "diffusion model here: use SongUNetPosEmbd or SongUNetPosLtEmbd"
            )
        return EDMPrecondSuperResolution(**common, sigma_data=model.sigma_data, **args)
    except TypeError as err:
        raise ConfigError(f"model.model_args: {err}") from err


def resolve_checkpoint(path: str | Path, what: str) -> Path:
    """A ``.mdlus`` file, or the newest one (most samples seen) in a checkpoints directory."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.mdlus"), key=_samples_seen)
        if not found:
            raise CheckpointError(f"{what}: directory {str(path)!r} holds no .mdlus checkpoint")
        return found[-1]
    if not path.is_file():
        raise CheckpointError(f"{what}: {str(path)!r} does not exist")
    return path


def _samples_seen(path: Path) -> int:
    try:
        return int(path.name.split(".")[-2])
    except (IndexError, ValueError):
        return -1


def load_module(path: str | Path, what: str, use_apex_gn: bool = False) -> torch.nn.Module:
    """Load any physicsnemo module from a ``.mdlus`` file, with a clear error if it is not one.

    A network saved with Apex's GroupNorm loads with torch's (same weights) unless
    ``use_apex_gn``: checkpoints trained on GPUs with Apex must load anywhere."""
    import physicsnemo

    from helpers.models.checkpoint_safety import check_mdlus

    path = resolve_checkpoint(path, what)
    args = check_mdlus(path, what)
    recorded = args.get("__args__")
    saved = isinstance(recorded, dict) and bool(recorded.get("use_apex_gn", False))
    override = {"use_apex_gn": use_apex_gn} if saved != use_apex_gn else None
    try:
        return physicsnemo.Module.from_checkpoint(str(path), override_args=override)
    except Exception as err:  # corrupt zip, wrong format, unknown class, ...
        raise CheckpointError(
            f"{what}: {str(path)!r} is not a readable physicsnemo checkpoint "
            f"({type(err).__name__}: {err})"
        ) from err


def load_regression_network(path: str | Path, image_shape: Sequence[int], n_input: int,
                            n_output: int,
                            option: str = "training.io.regression_checkpoint_path",
                            use_apex_gn: bool = False) -> torch.nn.Module:
    """The trained regression UNet, frozen, after checking it fits the dataset."""
    net = load_module(path, option, use_apex_gn)
    where = f"regression checkpoint {str(resolve_checkpoint(path, option))!r}"
    if hasattr(net, "sigma_data"):
        raise CheckpointError(
            f"{where} holds a diffusion model ({type(net).__name__}), not the regression UNet; "
            f"point {option} at the regression run's checkpoints (checkpoints_regression)")
    if not hasattr(net, "img_out_channels") or not hasattr(net, "img_in_channels"):
        raise CheckpointError(f"{where} holds a {type(net).__name__}, not a regression UNet")
    n_embedding = network_embedding_channels(net)
    expected_in = n_input + n_embedding
    if net.img_out_channels != n_output or net.img_in_channels != expected_in:
        raise CheckpointError(
            f"{where} predicts {net.img_out_channels} channels from {net.img_in_channels} "
            f"input channels, but the dataset has {n_output} output and {n_input} input "
            f"channels (+{n_embedding} positional); train the regression model on this dataset"
        )
    shape = (net.img_shape_y, net.img_shape_x)
    if tuple(shape) != tuple(image_shape):
        raise CheckpointError(
            f"{where} was trained on {shape} images, the dataset has {tuple(image_shape)}"
        )
    return net.eval().requires_grad_(False)


class PatchEmbeddingOrder(torch.nn.Module):
    """Give each patch its own positional embedding.

    physicsnemo's random patching lays patches out patch-major (``p * B + b``) while the UNet
    expands ``global_index`` batch-major, so with several images and patches the embeddings
    would belong to the wrong patches. Repeating each patch's index per image fixes the order.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, img_lr, sigma, global_index=None, lead_time_label=None, **kwargs):
        if global_index is None:
            return self.net(x, img_lr, sigma, lead_time_label=lead_time_label, **kwargs)
        if lead_time_label is not None:
            # The lead-time embedding follows the UNet's batch-major order: run the patches
            # batch-major and put the result back in patch-major order.
            patches, images = global_index.shape[0], lead_time_label.shape[0]

            def batch_major(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(patches, images, *t.shape[1:]).transpose(0, 1).reshape(t.shape)

            out = self.net(batch_major(x), batch_major(img_lr),
                           batch_major(sigma) if sigma.shape[0] == x.shape[0] else sigma,
                           global_index=global_index, lead_time_label=lead_time_label, **kwargs)
            return out.reshape(images, patches, *out.shape[1:]).transpose(0, 1).reshape(out.shape)
        global_index = global_index.repeat_interleave(x.shape[0] // global_index.shape[0], 0)
        return self.net(x, img_lr, sigma, global_index=global_index, **kwargs)
