import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from benchmark.config import NOISE_KEYS, Config, check_config
from benchmark.errors import ConfigError
from benchmark.identity import run_id
from benchmark.run import as_config, plain_dict

from .conftest import CONF_DIR, ROOT

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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.sequence.min_length=0"], "min_length=0"),
        (["dataset.sequence.session_by=day"], "session_by='day' is not allowed"),
        (["dataset.split.train=0.9"], "sum to 1"),
        (["train.epochs=0"], "train.epochs=0 must be >= 1"),
        (["model.dropout=1.0"], "model.dropout=1.0"),
        (["anomaly.severity=-0.5"], "anomaly.severity=-0.5"),
        (["anomaly.contamination.val=1.5"], "anomaly.contamination.val=1.5"),
        (["logger.name=tensorboard"], "logger.name='tensorboard'"),
    ],
)
def test_out_of_range_values_name_the_key(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(as_config(compose_config(overrides)))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.hiden_dim=3"], "unknown config key 'model.hiden_dim'; allowed here: ["),
        (["model=lsmt"], "Could not find 'model/lsmt'; available: ['gru', 'iforest', 'lstm'"),
        (["train.epochs=abc"], "bad value for 'train.epochs'"),
        (
            ["model.name=foo"],
            "expected one of [lstm, gru, transformer, multimodal, random, iforest, markov]",
        ),
        (["anomaly.mix.clik_flood=1"], "allowed here: ['account_takeover', 'brushing'"),
        (["anomaly.severity=1.5"], "anomaly.severity=1.5 is outside [0, 1]"),
        (["anomaly.contamination.test=1.0"], "anomaly.contamination.test=1.0 is outside [0, 1)"),
        (["experiment=nope"], "available: ['clean_train', 'default'"),
        (["dataset.sequence.min_length=40"], "min_length=40 must be between 1 and"),
        (["dataset.generator.n_users=0"], "generator.n_users=0 must be >= 1"),
        (["dataset.generator.personas.browser.focus=2"], "focus=2.0 is a probability"),
        (["dataset=retailrocket"], "RetailRocket events.csv not found at"),
        (["dataset=rees46", "dataset.path=nowhere.csv"], "python -m datasets.fetch rees46"),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_code_2(tmp_path, args, expected):
    result = cli("experiment=smoke", f"results_dir={tmp_path}", *args, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_prints_the_composed_job_config():
    result = cli("--cfg", "job", "experiment=smoke", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    job = OmegaConf.create(result.stdout)
    assert job.experiment_name == "smoke"
    assert job.model.name == "lstm"
