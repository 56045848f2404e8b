"""Compose the command line's config once, turning composition errors into one line."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra


def command_overrides(argv: list[str]) -> list[str] | None:
    """The overrides in ``argv``, or None when preflight should leave the call to Hydra
    (another config name, help)."""
    if any(
        a in ("-h", "--help", "--hydra-help")
        or a.startswith(("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"))
        for a in argv
    ):
        return None
    return [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]


def swept_values(overrides: list[str]) -> list[list[str]]:
    """Each override as the list of single overrides it stands for (one for a plain value,
    one per value of a sweep; empty for a sweep only Hydra's sweeper can expand: ``glob``,
    intervals)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices: list[list[str]] = []
    for override in OverridesParser.create().parse_overrides(overrides):
        values: list[str] = [override.input_line or ""]
        if override.is_sweep_override():
            try:
                key = override.get_key_element()
                values = [f"{key}={v}" for v in override.sweep_string_iterator()]
            except Exception:  # a sweep only Hydra's sweeper can expand
                values = []
        choices.append(values)
    return choices


def sweep_size(overrides: list[str]) -> int | None:
    """Jobs in the sweep (None when a sweep cannot be listed here or does not parse)."""
    try:
        choices = swept_values(overrides)
    except Exception:
        return None
    return math.prod(len(c) for c in choices) if all(choices) else None


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """Override lists that together use every value of every swept key once (the first
    values of all, then each other value of one key at a time): a misspelt key or a bad
    value anywhere in a sweep fails one of them, without composing the whole product.
    Sweeps Hydra cannot list here are checked at their first value by Hydra itself."""
    choices = swept_values(overrides)
    first = [values[0] for values in choices if values]
    variants = [first]
    for i, values in enumerate(choices):
        for value in values[1:]:
            variants.append([value if j == i else v[0] for j, v in enumerate(choices) if v])
    return variants


def is_dry_run(argv: list[str]) -> bool:
    """``dry_run=true`` among the overrides (a dry run creates no folder, not even results_dir)."""
    return any(a.lower() in ("dry_run=true", "dry_run=yes", "dry_run=1") for a in argv)


def preflight(argv: list[str], conf_dir: str) -> str | None:
    """None if the config composes and its results directory is writable, else a one-line
    description of the first problem."""
    overrides = command_overrides(argv)
    if overrides is None:
        return None
    touches_hydra = any(o.lstrip("+~").startswith("hydra") for o in overrides)
    from benchmark.config import path_problem

    cfg = None
    for variant in sweep_variants(overrides) if is_multirun(argv) else [overrides]:
        cfg, problem = compose_config(variant, conf_dir, with_hydra=touches_hydra)
        problem = problem or path_problem(cfg.results_dir, cfg.experiment_name)
        if not problem and touches_hydra:
            plain, problem = compose_config(variant, conf_dir)
        problem = problem or value_problem(plain if touches_hydra else cfg)
        if problem:
            return problem
    if cfg is None or is_dry_run(argv):
        return None
    return unwritable(str(cfg.results_dir))


def value_problem(cfg) -> str | None:
    """``check_config``'s one line for a composed config, or None (also for a detector and
    setting that do not pair: in a sweep that job is skipped as not applicable)."""
    from omegaconf import OmegaConf

    from benchmark.config import NotApplicableError, check_config, with_setting
    from benchmark.detectors.registry import check_device
    from benchmark.errors import ConfigError

    try:
        config = with_setting(OmegaConf.to_object(cfg))  # type: ignore[arg-type]
        check_config(config)
        check_device(config.model.name.value, config.framework.name.value, config.framework.device)
    except NotApplicableError:
        return None
    except ConfigError as err:
        return str(err)
    return table_problem(config.dataset)


def table_problem(dataset: object) -> str | None:
    """Why an event table (``dataset=events`` or a mapping over it) cannot be found, or None:
    said before Hydra starts rather than when the data stage begins."""
    from benchmark.config import EventsDatasetConfig
    from benchmark.run.data import table_path
    from datasets.loaders.common import DataFileError
    from datasets.loaders.table import HINT

    if not isinstance(dataset, EventsDatasetConfig) or not dataset.path.strip():
        return None
    try:
        path = table_path(dataset)
    except DataFileError as err:
        return str(err)
    if path.exists():
        return None
    return f"event table not found at {path}: check dataset.path ({HINT})"


def is_multirun(argv: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv)


PROBE_BYTES = 64 << 10  # a full disk still creates empty files: write some bytes


def unwritable(results_dir: str) -> str | None:
    """Why files cannot be written under ``results_dir`` and its ``.hydra`` folder (where
    Hydra saves each job's config; both created if missing), or None."""
    for folder in (Path(results_dir), Path(results_dir) / ".hydra"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
            try:
                os.write(fd, bytes(PROBE_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as err:
            where = "results_dir" if folder == Path(results_dir) else "Hydra's folder"
            return (
                f"cannot write {where} {folder} ({err.strerror or err}): free disk space, fix "
                "its permissions or choose another results_dir=..."
            )
    return None


def compose_config(overrides: list[str], conf_dir: str, with_hydra: bool = False):
    """(the composed config, None), or (None, a one-line description of the first problem).
    ``with_hydra`` composes Hydra's own config too, so that ``hydra/launcher=...`` and
    ``hydra.*`` overrides are checked (the result is then for checking only)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=with_hydra)
            return cfg, None
    except Exception as err:
        return None, describe(err, overrides, conf_dir)
    finally:
        GlobalHydra.instance().clear()


# Config nodes whose keys are names the user picks (anomaly types of a plugin, their knobs).
OPEN_NODES = ("anomaly.mix.", "anomaly.params.")


def describe(err: BaseException, overrides: list[str], conf_dir: str) -> str:
    """One line naming the key (or group) at fault and what it accepts."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    chain = _chain(err)
    for e in chain:
        if isinstance(e, MissingConfigException):
            return _missing_option(e)
    for e in chain:
        key = getattr(e, "full_key", None)
        if isinstance(e, ConfigKeyError | ConfigAttributeError) and key:
            allowed = _sibling_keys(key, overrides, conf_dir)
            if key.startswith(OPEN_NODES):  # keys of the user's choosing: new ones need a '+'
                return (
                    f"'{key}' is not set; set already here: {allowed} (a new key here, e.g. "
                    f"a type of your own, takes a leading '+': +{key}=...)"
                )
            return f"unknown config key '{key}'; allowed here: {allowed}"
        if isinstance(e, ValidationError) and key:
            return f"bad value for '{key}': {_first_line(e)}"
    return " ".join(_first_line(e) for e in chain[:2])


def _missing_option(e: BaseException) -> str:
    first = str(e).splitlines()[0]
    # Schema nodes live in the same groups (e.g. dataset/synthetic_schema) but are not choices.
    options = [o for o in (getattr(e, "options", None) or []) if not o.endswith("_schema")]
    return f"{first}; available: {options}" if options else first


def _sibling_keys(full_key: str, overrides: list[str], conf_dir: str) -> list[str]:
    """Keys that exist beside ``full_key``, composed without the bad override."""
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(full_key)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose(config_name="config", overrides=kept, return_hydra_config=True)
        node = cfg
        for part in filter(None, parent.split(".")):
            node = node[part]
        return sorted(str(k) for k in node)
    except Exception:
        return []
    finally:
        GlobalHydra.instance().clear()


def _chain(err: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        out.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
