"""Train a CorrDiff regression, diffusion or patch-based diffusion model.

    python train.py                                            # embedded dataset, regression
    python train.py --config-name=config_training_mini_regression.yaml ++dataset.data_path=...
    torchrun --standalone --nproc_per_node=<G> train.py ...    # data parallel (also SLURM/MPI)

Rerunning the same command resumes from the run's latest checkpoint.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from helpers.infrastructure.entry import quiet_library_warnings, run_guarded


@hydra.main(version_base=None, config_path="conf", config_name="config_training")
def main(cfg: DictConfig) -> None:
    from helpers.training.config import validate_training_config

    quiet_library_warnings()

    def job() -> None:
        config = validate_training_config(cfg)  # before the slow imports: errors come fast
        from helpers.infrastructure.cpu_threads import configure_cpu_threads
        from helpers.infrastructure.distributed import init_distributed
        from helpers.training.loop import train

        dist_manager = init_distributed()
        if dist_manager.rank != 0:
            logging.getLogger().setLevel(logging.WARNING)
        configure_cpu_threads(dist_manager.device)
        train(config, dist_manager)

    sys.exit(run_guarded(job))


if __name__ == "__main__":
    main()
