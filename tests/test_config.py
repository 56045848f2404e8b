import dataclasses
import math
import typing

import pytest
from omegaconf import OmegaConf

from benchmark import usage
from benchmark.config import (
    Config,
    EventsDatasetConfig,
    NotApplicableError,
    SyntheticDatasetConfig,
    check_config,
    with_setting,
)
from benchmark.limits import CHECKED_ELSEWHERE, LIMITS
from benchmark.records.identity import NOISE_KEYS, run_id
from benchmark.run.experiment import as_config, plain_dict

from .conftest import CONF_DIR, ROOT, cli

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_required_groups_exist():
    assert set(GROUPS) >= {
        "dataset",
        "anomaly",
        "model",
        "framework",
        "objective",
        "train",
        "timing",
        "logger",
        "experiment",
        "debug",
    }


@pytest.mark.parametrize("override", [f"{g}={o}" for g in GROUPS for o in options(g)])
def test_every_config_in_conf_composes_and_validates(compose_config, override):
    cfg = compose_config([override])
    config = as_config(cfg)
    assert isinstance(config, Config)
    check_config(config)


@pytest.mark.parametrize(
    ("setting", "objective"),
    [("supervised", "classify"), ("semi_supervised", "next_event"), ("unsupervised", "next_event")],
)
def test_the_setting_picks_a_fitting_objective_unless_one_is_given(
    compose_config, setting, objective
):
    config = as_config(compose_config([f"setting={setting}"]))
    assert (config.setting.value, config.objective.name.value) == (setting, objective)
    given = as_config(compose_config([f"setting={setting}", "objective=masked"]))
    assert given.objective.name.value == "masked"


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ([], "supervised"),
        (["model=iforest"], "unsupervised"),
        (["model=hgb"], "supervised"),
        (["objective=masked"], "unsupervised"),
    ],
)
def test_auto_resolves_to_the_detectors_own_setting(compose_config, overrides, setting):
    config = with_setting(as_config(compose_config(overrides)))
    assert config.setting.value == setting


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=iforest", "setting=supervised"],
            r"model=iforest runs in the unsupervised and semi_supervised .*"
            r"not setting=supervised: use setting=unsupervised",
        ),
        (["model=hgb", "setting=unsupervised"], r"model=hgb runs in the supervised setting"),
        (
            ["setting=unsupervised", "objective=classify"],
            r"objective=classify runs in the "
            r"supervised setting\(s\), not setting=unsupervised: use a self-supervised objective",
        ),
    ],
)
def test_a_detector_outside_its_settings_is_refused_with_the_fix(
    compose_config, overrides, message
):
    with pytest.raises(NotApplicableError, match=message):
        check_config(as_config(compose_config(overrides)))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_set_their_own_name(compose_config, experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.experiment_name == experiment


def test_smoke_experiment_holds_only_deltas(compose_config):
    smoke = compose_config(["experiment=smoke"])
    default = compose_config([])
    assert smoke.dataset.generator.n_users < default.dataset.generator.n_users
    assert smoke.anomaly == default.anomaly  # untouched groups stay at their defaults
    assert smoke.timing.enabled is False


def test_run_id_ignores_noise_and_tracks_everything_else(compose_config):
    base = plain_dict(compose_config([]))
    same = plain_dict(compose_config(["logger=none", "results_dir=/elsewhere"]))
    other = plain_dict(compose_config(["seed=1"]))
    assert run_id(base, NOISE_KEYS) == run_id(same, NOISE_KEYS)
    assert run_id(base, NOISE_KEYS) != run_id(other, NOISE_KEYS)
    assert len(run_id(base, NOISE_KEYS)) == 10


def test_help_says_what_the_tool_does_and_lists_every_group_with_examples():
    result = cli("--help", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Anomaly detection on e-commerce clickstreams")
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
    assert sorted(usage.GROUPS) == groups, "every config group has its line in benchmark.usage"
    for group in groups:
        assert f"  {group} " in result.stdout
    for option in ("synthetic_small", "paper_5_multimodal_fusion", "launcher/ray_local"):
        assert option in result.stdout
    assert "_schema" not in result.stdout  # registered schemas are no options
    assert result.stdout.count("python -m benchmark") >= 5
    assert "defaults:" not in result.stdout  # no config dump


def test_cli_prints_the_composed_job_config():
    result = cli("--cfg", "job", "experiment=smoke", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    job = OmegaConf.create(result.stdout)
    assert job.experiment_name == "smoke"
    assert job.model.name == "lstm"


# --- the range of every number -----------------------------------------------------------


def schema_numbers(cls: type, prefix: str = "") -> set[str]:
    """Dotted keys of every int or float field (optional ones too) of a schema dataclass,
    the dataset section taken from each dataset schema."""
    hints = typing.get_type_hints(cls)
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        path, kind = f"{prefix}{f.name}", hints[f.name]
        nested = [kind] if dataclasses.is_dataclass(kind) else []
        if path == "dataset":
            nested = [SyntheticDatasetConfig, EventsDatasetConfig]
        for inner in nested:
            keys |= schema_numbers(inner, f"{path}.")
        args = set(typing.get_args(kind)) - {type(None)} or {kind}
        if args & {int, float} and bool not in args:
            keys.add(path)
    return keys


def test_every_number_in_the_schema_has_a_range():
    keys = schema_numbers(Config)
    assert {"seed", "train.patience", "dataset.max_rows", "timing.warmup_steps"} <= keys
    owned = [k for k in keys if k.startswith(CHECKED_ELSEWHERE)]
    assert sorted(k for k in keys if k not in LIMITS and k not in owned) == []
    assert sorted(set(LIMITS) - keys) == [], "a range for a key the schema does not have"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", -1, "seed=-1 is outside [0, 4294967295] (pick e.g. seed=0)"),
        ("train.lr", 0.0, "train.lr=0.0 must be > 0"),
        ("train.warmup", 1.0, "train.warmup=1.0 is outside [0, 1) (a share of the training steps)"),
        ("objective.mask_prob", 0.0, "objective.mask_prob=0.0 is outside (0, 1)"),
        (
            "evaluation.fixed_threshold",
            math.inf,
            "evaluation.fixed_threshold=inf must be a finite number",
        ),
        ("train.weight_decay", math.nan, "train.weight_decay=nan must be a finite number"),
        ("dataset.max_rows", 0, "dataset.max_rows=0 must be >= 1 (null reads every row)"),
    ],
)
def test_a_number_outside_its_range_is_one_line_naming_key_value_and_range(key, value, message):
    assert LIMITS[key].problem(key, value) == message


@pytest.mark.parametrize(("key", "value"), [("train.warmup", 0.0), ("seed", 2**32 - 1)])
def test_the_ends_of_a_closed_range_are_inside(key, value):
    assert LIMITS[key].problem(key, value) is None
