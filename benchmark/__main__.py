"""``python -m benchmark [overrides]``: a thin Hydra entry over :func:`benchmark.run.run`.

Before Hydra runs, the overrides are composed once (``preflight``) so that a misspelt key, an
unknown option or a value of the wrong type is reported in one line naming the key and what is
allowed, with exit code 2, instead of a multi-line Hydra report.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from benchmark.config import register_configs
from benchmark.errors import user_error_types
from benchmark.preflight import preflight

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("benchmark")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from benchmark.run import run  # imported here so --help and errors stay fast

    try:
        result = run(cfg)
    except user_error_types() as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"status: {result.status}  run_id: {result.run_id}  record: "
        f"{result.run_dir / 'record.json'}"
    )


def cli() -> None:
    register_configs()
    problem = preflight(sys.argv[1:], CONF_DIR)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
