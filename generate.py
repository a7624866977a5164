"""Generate CorrDiff ensembles to NetCDF (groups input / truth / prediction).

    python generate.py                                          # embedded dataset, valid split
    python generate.py --config-name="config_generate_mini.yaml" \
        ++generation.io.res_ckpt_filename=<diffusion .mdlus> \
        ++generation.io.reg_ckpt_filename=<regression .mdlus> \
        ++generation.io.output_filename=<out.nc>
    torchrun --standalone --nproc_per_node=<G> generate.py ...  # members split across ranks
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from helpers.infrastructure.entry import quiet_library_warnings, run_guarded


@hydra.main(version_base=None, config_path="conf", config_name="config_generate")
def main(cfg: DictConfig) -> None:
    from helpers.generation.config import validate_generation_config

    quiet_library_warnings()

    def job() -> None:
        config = validate_generation_config(cfg)  # before the slow imports: errors come fast
        from helpers.generation.ensemble import EnsembleGenerator, run_attributes
        from helpers.infrastructure.cpu_threads import configure_cpu_threads
        from helpers.infrastructure.distributed import init_distributed

        dist_manager = init_distributed()
        if dist_manager.rank != 0:
            logging.getLogger().setLevel(logging.WARNING)
        configure_cpu_threads(dist_manager.device)
        resolved = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, ["dataset", "generation"]),
                                     resolve=True)
        EnsembleGenerator(config, dist_manager, run_attributes(resolved)).run()

    sys.exit(run_guarded(job))


if __name__ == "__main__":
    main()
