"""Shared fixtures: small synthetic worlds and Hydra composition of the real config."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from benchmark.config import register_configs
from datasets.sessions import limit_lengths
from datasets.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"

# XLA compiles dominate the JAX tests' time, and many tests compile the same small programs
# (the same shapes, a fresh detector each): a persistent compilation cache turns each repeat
# into a disk read. Keyed by the program, compile options and JAX version, so a stale entry
# cannot be used. Every compile is kept, however quick: the eager operations of a model's
# initialisation (tens of milliseconds each, hundreds per model) are then shared between the
# test processes too. Set here (before JAX is imported) so subprocess CLI tests inherit it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# The tests compile hundreds of small XLA programs and run each on a few batches: LLVM's
# optimisation passes cost more there than they save (the parity file, from an empty cache:
# 155 s at the default level, 131 s at 0). The same programs, so the same results.
XLA_FLAGS = ["--xla_backend_optimization_level=0"]
# Under pytest-xdist (`-n 2`, as `make test` runs), each worker takes one core: two workers with
# two threads each would fight over a 2-core machine. Set before torch or JAX is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    XLA_FLAGS += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
os.environ.setdefault("XLA_FLAGS", " ".join(XLA_FLAGS))


@pytest.fixture(scope="session")
def small_world():
    """About 6k sessions: big enough for rate and distribution checks, fast to build."""
    return generate(SyntheticConfig(n_users=2000), seed=3)


@pytest.fixture(scope="session")
def sessions(small_world):
    events, _ = limit_lengths(small_world.events.sorted(), min_length=2, max_length=50)
    return events


def compose_typed(overrides: list[str]):
    """The typed Config of conf/config.yaml with ``overrides`` (for module-scoped fixtures)."""
    from benchmark.run.experiment import as_config

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return as_config(compose(config_name="config", overrides=overrides))
    finally:
        GlobalHydra.instance().clear()


def detector_spec(
    config, prepared, model: str | None = None, objective: str | None = None, **framework
):
    """A DetectorSpec (seed 0) for a typed Config and its prepared data; ``model`` and
    ``objective`` replace the config's, ``framework`` overrides fields of its framework
    section (name, device, precision)."""
    from benchmark.config import ModelName, ObjectiveName
    from benchmark.detectors.registry import DetectorSpec
    from benchmark.run.detect import data_info

    m, o = config.model, config.objective
    return DetectorSpec(
        model=m if model is None else replace(m, name=ModelName(model)),
        objective=o if objective is None else replace(o, name=ObjectiveName(objective)),
        train=config.train,
        framework=replace(config.framework, **framework),
        data=data_info(prepared, config.dataset.sequence.max_length),
        seed=0,
    )


def only_type(name: str) -> list[str]:
    """Overrides that inject anomalies of one type only."""
    from benchmark.anomalies.inject import ANOMALY_TYPES

    return [f"anomaly.mix.{t}={float(t == name)}" for t in ANOMALY_TYPES]


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


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m benchmark *args`` in a subprocess, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def pytest_terminal_summary(terminalreporter) -> None:
    """The bad-input corpus (tests/test_bad_inputs.py) counted by how each case ended."""
    outcomes: dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for key, value in getattr(report, "user_properties", ()):
                if key == "bad_input":
                    outcomes[value] = outcomes.get(value, 0) + 1
    if outcomes:
        counts = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items(), key=lambda x: -x[1]))
        terminalreporter.write_line(f"bad-input corpus: {sum(outcomes.values())} cases: {counts}")


# The longest test files first: `make test` hands whole files to its two workers as each
# becomes free (--dist loadfile), so a long file scheduled last leaves the other worker idle
# until it ends. Longest first keeps the tail short. A hint only: a stale list costs balance,
# never a result. Ordered by their time in the fast tier on the reference machine.
LONGEST_FIRST = (
    "test_bad_inputs.py",
    "test_parity.py",
    "test_loaders.py",
    "test_sweeps.py",
    "test_config.py",
    "test_partitions.py",
    "test_timing.py",
    "test_reproduction.py",
    "test_models_jax.py",
    "test_report.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
