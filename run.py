"""m2r entry point: compose conf/ with Hydra and run the stage. See README.md."""

import hydra
from omegaconf import DictConfig

import m2r


@hydra.main(version_base="1.3", config_path="conf", config_name="run")
def main(cfg: DictConfig) -> None:
    m2r.run(cfg)


if __name__ == "__main__":
    main()
