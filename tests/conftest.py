"""Shared fixtures: small synthetic worlds and Hydra composition of the real config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from benchmark.config import register_configs
from datasets.sessions import limit_lengths
from datasets.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


@pytest.fixture(scope="session")
def small_world():
    """About 6k sessions: big enough for rate and distribution checks, fast to build."""
    return generate(SyntheticConfig(n_users=2000), seed=3)


@pytest.fixture(scope="session")
def sessions(small_world):
    events, _ = limit_lengths(small_world.events.sorted(), min_length=2, max_length=50)
    return events


@pytest.fixture
def compose_config():
    """compose(overrides) -> DictConfig of conf/config.yaml, as the CLI would build it."""
    register_configs()

    def _compose(overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()
