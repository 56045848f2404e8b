"""The bad-input corpus: what a user can get wrong, across the command line, config values,
data files, the results directory and checkpoints. Each case must end in one clear line that
names the fix (exit code 2 on the command line) or a documented quarantine, and must never
lose or corrupt a record that was already written."""

from __future__ import annotations

import ast
import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from benchmark.config import check_config
from benchmark.errors import ConfigError, ResultsWriteError, user_error_types
from benchmark.records import atomic
from benchmark.records.atomic import write_atomic
from benchmark.records.record import RunRecord, load
from benchmark.records.store import STORE_FILE
from benchmark.run.experiment import RECORD_FILE, as_config, run

from .conftest import ROOT, cli

SAMPLE = ROOT / "datasets/samples/diginetica/sample_train-item-views.csv"
HEADER = SAMPLE.read_text().splitlines()[0]
ROW = "1;NA;81766;526309;2016-05-09"
DIGINETICA = ("experiment=smoke", "model=random", "dataset=diginetica")


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    assert "Traceback" not in text
    return text


HAS_CUDA = bool(shutil.which("nvidia-smi"))


def records_under(root: Path) -> list[RunRecord]:
    """Every record under ``root``, each parsed (a half-written one would fail here)."""
    return [load(p) for p in root.rglob(RECORD_FILE)]


# --- the command line: one line on stderr, exit code 2 ------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.hiden_dim=3"], "unknown config key 'model.hiden_dim'; allowed here: ["),
        (["model=lsmt"], "Could not find 'model/lsmt'; available: ['gru', 'hgb', 'iforest', 'lof'"),
        (["train.epochs=abc"], "bad value for 'train.epochs'"),
        (
            ["model.name=foo"],
            "expected one of [lstm, gru, transformer, multimodal, random, iforest, markov, lof",
        ),
        (["model.name=os.system"], "expected one of [lstm, gru"),  # a registry name, no import
        (["anomaly.mix.clik_flood=1"], "set already here: ['account_takeover', 'brushing'"),
        (["+anomaly.mix.clik_flood=1"], "unknown anomaly type(s) ['clik_flood']; known:"),
        (["anomaly.severity=1.5"], "anomaly.severity=1.5 is outside [0, 1]"),
        (["anomaly.contamination.test=1.0"], "anomaly.contamination.test=1.0 is outside [0, 1)"),
        (["experiment=nope"], "available: ['clean_train', 'default'"),
        (["hydra/launcher=slurmish"], "Could not find 'hydra/launcher/slurmish'"),
        (["dataset.sequence.min_length=40"], "min_length=40 must be between 1 and"),
        (["dataset.generator.n_users=0"], "generator.n_users=0 must be >= 1"),
        (["dataset.generator.personas.browser.focus=2"], "focus=2.0 is a probability"),
        (["dataset=retailrocket"], "RetailRocket events.csv not found at"),
        (["dataset=rees46", "dataset.path=nowhere.csv"], "python -m datasets.fetch rees46"),
        (["resume=maybe"], "'resume': Invalid value 'maybe', expected one of [ok, finished, none]"),
        (["results_dir=README.md"], "results_dir=README.md is not a writable directory"),
        (["seed=-1"], "seed=-1 is outside [0, 4294967295]"),
        (["seed=1180591620717411303424"], "seed=1180591620717411303424 is outside"),
        (["data_seed=-3"], "data_seed=-3 is outside"),
        (["model=transformer", "model.num_heads=3"], "must be divisible by model.num_heads=3"),
        (["model.num_heads=0"], "model.num_heads=0 must be >= 1"),
        (["evaluation.bootstrap=-5"], "evaluation.bootstrap=-5 must be >= 0"),
        (["objective.top_k=0"], "objective.top_k=0 must be >= 1"),
        (["train.patience=-1"], "train.patience=-1 must be >= 1"),
        (["evaluation.fixed_threshold=nan"], "evaluation.fixed_threshold=nan must be a finite"),
        (["train.grad_clip=-1"], "train.grad_clip=-1.0 must be >= 0"),
        pytest.param(
            ["framework.device=cuda"],
            "framework.device=cuda but PyTorch sees no CUDA device",
            marks=pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device"),
        ),
        # nothing lands outside results_dir: checked before Hydra writes its own folder
        (["results_dir="], "results_dir is empty: name the folder for results"),
        (["experiment_name=../../x"], "experiment_name='../../x' must be one folder name"),
        (["experiment_name=a/b"], "experiment_name='a/b' must be one folder name"),
        (["-m", "seed=0,1", "experiment_name=.."], "experiment_name='..' must be one folder"),
        # inside a sweep: every swept value is checked before the first job starts
        (["-m", "model=random,markov", "model.hiden_dim=3"], "unknown config key 'model.hid"),
        (["-m", "model=random,lsmt"], "Could not find 'model/lsmt'; available: ['gru'"),
        (["-m", "seed=0,1", "train.epochs=1,x"], "bad value for 'train.epochs'"),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_code_2(tmp_path, args, expected):
    own_results = any(a.startswith("results_dir=") for a in args)
    results = [] if own_results else [f"results_dir={tmp_path}"]
    result = cli("experiment=smoke", *results, *args, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


# --- config values out of range: ConfigError naming the key --------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.sequence.min_length=0"], "min_length=0"),
        (["dataset.split.train=0.9"], "sum to 1"),
        (["train.epochs=0"], "train.epochs=0 must be >= 1"),
        (["train.batch_size=-4"], "train.batch_size=-4 must be >= 1"),
        (["train.lr=0"], "train.lr=0.0 must be > 0"),
        (["model.dropout=1.0"], "model.dropout=1.0"),
        (["anomaly.severity=-0.5"], "anomaly.severity=-0.5"),
        (["anomaly.contamination.val=1.5"], "anomaly.contamination.val=1.5"),
        (["model=lstm", "framework.lstm_kernel=cudnn"], "framework=jax model=lstm only"),
        (["model=gru", "framework=jax", "framework.lstm_kernel=cudnn"], "model=lstm only"),
        (["timing.batch_sizes=[32,0]"], r"timing.batch_sizes\[1\]=0 must be >= 1"),
    ],
)
def test_out_of_range_values_name_the_key(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        check_config(as_config(compose_config(overrides)))
    one_line(caught.value)


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("dataset.sequence.session_by=day", "[session, gap]"),
        ("logger.name=tensorboard", "[wandb_offline, wandb, none]"),
        ("framework.precision=fp8", "[fp32, bf16]"),
        ("framework.lstm_kernel=fused", "[scan, cudnn]"),
        ("framework.compile_mode=fast", "[default, reduce_overhead, max_autotune]"),
        ("evaluation.threshold=median", "[max_f1, fpr, balanced, fixed]"),
        ("pca.statistic=q", "[t2, spe]"),
    ],
)
def test_a_value_outside_its_choices_is_refused_at_composition(override, allowed):
    """Enum-typed fields: OmegaConf refuses the value while composing, and the one line names
    the key and every allowed value."""
    from benchmark.paths import CONF_DIR
    from benchmark.run.preflight import compose_config

    cfg, problem = compose_config(["experiment=smoke", override], str(CONF_DIR))
    key, value = override.split("=")
    assert cfg is None
    assert problem == f"bad value for {key!r}: Invalid value {value!r}, expected one of {allowed}"


# --- data files: the run fails in phase "data" with the file (and line) named ---------------


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


DATA_FILES = {
    "empty": ("", "the file is empty"),
    "header_only": (HEADER + "\n", "the dataset has no events"),
    "binary": (bytes(range(256)) * 64, "the first line is not text"),
    "gzip_not_decompressed": (b"\x1f\x8b\x08\x00" + bytes(500), "not text"),
    "wrong_separator": (HEADER.replace(";", ",") + "\n" + ROW.replace(";", ","), "comma-sep"),
    "missing_column": (HEADER.replace(";eventdate", "") + "\n" + ROW, "missing column(s)"),
    "bad_value": (f"{HEADER}\n{ROW}\n1;NA;abc;5;2016-05-09\n", ":3: column 'item_id'"),
    "not_utf8": (f"{HEADER}\n{ROW}\n".encode() + b"1;NA;\xff\xfe;5;2016-05-09\n", "UTF-8"),
    "wrong_field_count": (f"{HEADER}\n{ROW}\n1;NA;5\n", ":3: expected 5 fields, found 3"),
    "huge_line": (f"{HEADER}\n{ROW}\n1;NA;{'7' * 1_200_000};5;2016-05-09\n", "longer than 1 MiB"),
}


@pytest.mark.parametrize("case", sorted(DATA_FILES))
def test_a_bad_data_file_fails_the_run_in_one_line_with_the_file_named(
    compose_config, tmp_path, case
):
    content, message = DATA_FILES[case]
    path = write(tmp_path / f"{case}.csv", content)
    cfg = compose_config(
        [*DIGINETICA, f"dataset.path={path}", f"results_dir={tmp_path / 'results'}"]
    )
    with pytest.raises(user_error_types()) as caught:
        run(cfg)
    text = one_line(caught.value)
    assert message in text
    (record,) = records_under(tmp_path / "results")
    assert (record.status, record.failed_phase) == ("failed", "data")


def test_a_bad_row_can_be_quarantined_instead(compose_config, tmp_path):
    lines = SAMPLE.read_text().splitlines()
    lines.insert(2, "1;NA;abc;5;2016-05-09")
    path = write(tmp_path / "rows.csv", "\n".join(lines) + "\n")
    cfg = compose_config(
        [*DIGINETICA, f"dataset.path={path}", "dataset.strict=false", f"results_dir={tmp_path}"]
    )
    source = run(cfg).record.data["source"]
    assert source["quarantined"] == {"bad_value": 1}
    assert ":3: column 'item_id'" in source["examples"][0]


@pytest.mark.parametrize("where", ["missing.csv", "a_directory"])
def test_a_missing_data_path_names_the_download(compose_config, tmp_path, where):
    (tmp_path / "a_directory").mkdir()
    cfg = compose_config(
        [*DIGINETICA, f"dataset.path={tmp_path / where}", f"results_dir={tmp_path}"]
    )
    with pytest.raises(user_error_types(), match=r"python -m datasets\.fetch diginetica") as caught:
        run(cfg)
    one_line(caught.value)


# --- the results directory: unwritable, disk full, interrupted writes -----------------------


@pytest.fixture
def smoke(compose_config, tmp_path):
    def _smoke(*overrides: str):
        return compose_config(
            ["experiment=smoke", "model=random", f"results_dir={tmp_path}", *overrides]
        )

    return _smoke


def test_a_results_dir_that_is_a_file_is_one_line(compose_config, tmp_path):
    blocker = write(tmp_path / "results", "not a directory")
    cfg = compose_config(["experiment=smoke", "model=random", f"results_dir={blocker}"])
    with pytest.raises(ResultsWriteError, match="make results_dir writable") as caught:
        run(cfg)
    one_line(caught.value)
    assert blocker.read_text() == "not a directory"


def fail_fsync_after(monkeypatch, ok_calls: int) -> None:
    """Disk full: every fsync after the first ``ok_calls`` fails with ENOSPC."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > ok_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def test_disk_full_before_a_rerun_keeps_the_earlier_record(smoke, tmp_path, monkeypatch):
    first = run(smoke())
    before = (first.run_dir / RECORD_FILE).read_text()
    fail_fsync_after(monkeypatch, 0)
    with pytest.raises(ResultsWriteError, match="No space left on device") as caught:
        run(smoke("resume=none"))
    one_line(caught.value)
    assert (first.run_dir / RECORD_FILE).read_text() == before
    assert not list(first.run_dir.glob(".*")), "no temporary file left"


def test_disk_full_mid_run_leaves_a_valid_unfinished_record_that_resumes(
    smoke, tmp_path, monkeypatch
):
    fail_fsync_after(monkeypatch, 2)  # config.yaml and the running record get written
    with pytest.raises(ResultsWriteError):
        run(smoke())
    (record,) = records_under(tmp_path)
    assert record.status == "running"
    monkeypatch.undo()
    resumed = run(smoke())
    assert resumed.decision.action == "rerun"
    assert "unfinished" in resumed.decision.reason
    assert [r.status for r in records_under(tmp_path)] == ["ok"]


def half_write(target: Path) -> None:
    with atomic.atomic_path(target) as tmp:
        tmp.write_text('{"status": "runn')
        raise KeyboardInterrupt  # Ctrl-C (or any error) halfway through the write


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write(tmp_path / "record.json", '{"status": "ok"}')
    with pytest.raises(KeyboardInterrupt):
        half_write(target)
    assert target.read_text() == '{"status": "ok"}'
    assert list(tmp_path.iterdir()) == [target]
    write_atomic(target, '{"status": "failed"}')
    assert json.loads(target.read_text()) == {"status": "failed"}


def test_an_unusable_results_store_is_a_warning_and_the_record_stays(smoke, tmp_path, caplog):
    write(tmp_path / STORE_FILE, b"this is not an SQLite database" * 100)
    result = run(smoke())
    assert result.status == "ok"
    assert json.loads((result.run_dir / RECORD_FILE).read_text())["status"] == "ok"
    assert "results store" in caplog.text
    assert "python -m benchmark.records.store" in caplog.text


def test_an_unreadable_record_is_quarantined_and_the_config_reruns(smoke, tmp_path):
    first = run(smoke())
    write(first.run_dir / RECORD_FILE, "{not json")
    again = run(smoke())
    assert again.status == "ok"
    assert "unreadable" in again.decision.reason
    assert [p.read_text() for p in first.run_dir.glob(f"{RECORD_FILE}.corrupt-*")] == ["{not json"]


# --- checkpoints: never unpickled, one line when wrong --------------------------------------


class LeavesAMark:
    """Unpickling this writes a file: proof that a loader executed code from the file."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self):
        return (Path.write_text, (self.mark, "code ran"))


def checkpoint_case(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "checkpoint.safetensors"
    if case == "pickle":
        path.write_bytes(pickle.dumps(LeavesAMark(tmp_path / "MARK")))
    elif case == "garbage":
        path.write_bytes(b"\x00\x01 not a safetensors file")
    elif case == "truncated":
        import numpy as np
        from safetensors.numpy import save_file

        save_file({"w": np.ones((64, 64), np.float32)}, str(path), metadata={"model": "lstm"})
        path.write_bytes(path.read_bytes()[:200])
    return path  # "missing": never written


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "pickle"])
def test_a_bad_checkpoint_is_refused_in_one_line_without_running_its_code(
    compose_config, tmp_path, case
):
    path = checkpoint_case(tmp_path, case)
    cfg = compose_config(
        ["experiment=smoke", "model=lstm", f"checkpoint={path}", f"results_dir={tmp_path}"]
    )
    with pytest.raises(user_error_types(), match="checkpoint") as caught:
        run(cfg)
    one_line(caught.value)
    assert not (tmp_path / "MARK").exists()
    (record,) = records_under(tmp_path)
    assert (record.status, record.failed_phase) == ("failed", "train")


# --- nothing in the project loads a file in a way that can run code ----------------------


def unsafe_loads(source: str) -> list[str]:
    """Calls that can execute code from a file: pickle, ``torch.load`` without
    ``weights_only=True``, ``np.load`` without ``allow_pickle=False``, eval/exec, Hydra's
    ``instantiate`` (an import path from a config)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func, kwargs = node.func, {k.arg: k.value for k in node.keywords}
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        flag = {"np": "allow_pickle", "numpy": "allow_pickle", "torch": "weights_only"}
        safe_value = {"allow_pickle": False, "weights_only": True}
        if owner in ("pickle", "cloudpickle", "dill", "joblib") and name in ("load", "loads"):
            found.append(f"{owner}.{name}")
        elif name == "load" and owner in flag:
            value = kwargs.get(flag[owner])
            if not (isinstance(value, ast.Constant) and value.value is safe_value[flag[owner]]):
                found.append(f"{owner}.load without {flag[owner]}={safe_value[flag[owner]]}")
        elif isinstance(func, ast.Name) and name in ("eval", "exec", "instantiate"):
            found.append(name)
    return found


def test_unsafe_loads_are_recognised():
    assert unsafe_loads("np.load(p)") == ["np.load without allow_pickle=False"]
    assert unsafe_loads("torch.load(p, weights_only=False)") == [
        "torch.load without weights_only=True"
    ]
    assert unsafe_loads("pickle.loads(b); eval(s)") == ["pickle.loads", "eval"]
    assert unsafe_loads("np.load(p, allow_pickle=False); model.eval()") == []


def test_no_project_code_loads_files_unsafely():
    packages = ("benchmark", "datasets", "models_common", "models_torch", "models_jax")
    offenders = {
        str(path.relative_to(ROOT)): found
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        if (found := unsafe_loads(path.read_text()))
    }
    assert offenders == {}
