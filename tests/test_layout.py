"""The architecture's boundaries, checked: who may import what, and what resolves where."""

import subprocess
import sys

from .conftest import ROOT

# Every harness module but the framework adapters (the only ones that may import torch or jax).
NEUTRAL_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("benchmark", "datasets")
    for path in (ROOT / package).rglob("*.py")
    if "adapters" not in path.parts and path.stem != "__main__"
)


def imported_modules(*modules: str) -> set[str]:
    code = ";".join(f"import {m}" for m in modules) + ";import sys;print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def test_only_the_framework_adapters_import_torch_or_jax():
    assert len(NEUTRAL_MODULES) > 40
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


PACKAGES = ("benchmark", "datasets", "models_common", "models_torch", "models_jax")


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path, modules: set[str]) -> set[str]:
    """Every project module a file imports, anywhere in it, with the packages Python runs first
    (importing ``a.b.c`` executes ``a`` and ``a.b``)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found & modules


def test_no_import_cycles():
    """Each module can be read after the ones it imports: no two modules need each other."""
    from graphlib import CycleError, TopologicalSorter

    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    graph = {module_name(p): project_imports(p, modules) - {module_name(p)} for p in files}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_packages_init_files_hold_no_code():
    """A package's ``__init__`` is its docstring: importing one module never runs its siblings."""
    for pkg in PACKAGES:
        for init in (ROOT / pkg).rglob("__init__.py"):
            body = [line for line in init.read_text().splitlines() if line.strip()]
            assert all(not line.startswith(("from ", "import ")) for line in body), init
