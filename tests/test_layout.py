"""The architecture's boundaries, checked: who may import what, and what resolves where."""

import subprocess
import sys

from .conftest import ROOT

NEUTRAL_MODULES = [
    "datasets.schema",
    "datasets.synthetic",
    "datasets.sessions",
    "datasets.features",
    "benchmark.anomalies",
    "benchmark.data",
    "benchmark.run",
    "benchmark.config",
    "benchmark.store",
    "benchmark.tracking",
    "benchmark.selection",
    "benchmark.stats",
    "benchmark.plots",
    "benchmark.report",
    "benchmark.describe",
    "benchmark.reproduction",
    "benchmark.callbacks",
    "benchmark.pipeline",
    "benchmark.timing",
    "datasets.loaders",
    "datasets.fetch",
    "datasets.cache",
]


def imported_modules(*modules: str) -> set[str]:
    code = ";".join(f"import {m}" for m in modules) + ";import sys;print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def test_data_injection_and_run_stages_import_neither_torch_nor_jax():
    loaded = imported_modules(*NEUTRAL_MODULES)
    assert not {m for m in loaded if m.split(".")[0] in ("torch", "jax", "flax", "optax")}


def test_datasets_is_this_project_package_not_hugging_face():
    import datasets

    assert datasets.__file__.startswith(str(ROOT / "datasets"))
    assert hasattr(datasets, "schema") or __import__("datasets.schema")


def test_required_top_level_layout():
    for name in (
        "conf",
        "benchmark",
        "models_torch",
        "models_jax",
        "datasets",
        "results",
        "tests",
        "pyproject.toml",
        "README.md",
        "Makefile",
        ".ci/run",
    ):
        assert (ROOT / name).exists(), name
