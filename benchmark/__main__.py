"""``python -m benchmark [overrides]``: a thin Hydra entry over
:func:`benchmark.run.experiment.run`.

Before Hydra runs, the overrides are composed once (``preflight``) so that a misspelt key, an
unknown option or a value of the wrong type is reported in one line naming the key and what is
allowed, with exit code 2, instead of a multi-line Hydra report.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from benchmark import paths
from benchmark.config import NotApplicableError, mark_invocation, register_configs
from benchmark.errors import user_error_types
from benchmark.run.callbacks import OUTCOME_FILE, sweep_failed
from benchmark.run.preflight import (
    command_overrides,
    is_dry_run,
    is_multirun,
    preflight,
    sweep_size,
)
from benchmark.run.progress import SweepClock

CONF_DIR = str(paths.CONF_DIR)
log = logging.getLogger("benchmark")
_CLOCK: list[SweepClock] = []  # the sweep this process runs, if any


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from benchmark.run.threads import launcher_threads

    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.threads == 0:  # jobs side by side share the CPUs (benchmark/run/threads.py)
        cfg.threads = launcher_threads(HydraConfig.get().launcher)
    clock = _CLOCK[0] if sweeping and _CLOCK else None
    if clock is not None and clock.total is None:
        clock.total = sweep_size(swept(HydraConfig.get().sweeper.get("params") or {}))
    if clock is not None:
        print(clock.job_line(HydraConfig.get().job.num, job_overrides()), flush=True)
    started, ran = time.perf_counter(), False
    try:
        ran = run_and_report(cfg, sweeping)
    finally:
        if clock is not None:
            clock.job_done(time.perf_counter() - started, ran)


def run_and_report(cfg: DictConfig, sweeping: bool) -> bool:
    """One job: run it, leave its outcome for the sweep summary, print what happened.
    Returns whether it ran (not skipped, planned or inapplicable)."""
    from benchmark.run.experiment import run  # imported here so --help and errors stay fast

    try:
        result = run(cfg)
    except NotApplicableError as err:
        if not sweeping:  # asked for by name: the user's error
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        # A sweep's product of settings and detectors: this pair does not exist, no record.
        write_outcome(None, status="not applicable", reason=str(err))
        print(f"not applicable: {job_overrides()}  ({err})")
        return False
    except Exception as err:
        # The record (status failed, phase, error) is on disk already. In a sweep the other
        # runs go on; the sweep's summary lists this one and the exit code says so.
        failed = getattr(err, "run_result", None)
        write_outcome(failed, err)
        user_error = isinstance(err, user_error_types())
        if sweeping or user_error:
            where = f"  record: {failed.run_dir / 'record.json'}" if failed else ""
            print(f"error: {err}{where}", file=sys.stderr)
        if not sweeping:
            if user_error:
                sys.exit(2)
            raise
        return True
    write_outcome(result)
    d = result.decision
    if d is not None and (result.status == "planned" or d.action == "skip"):
        what = f"planned: {d.action:<5}" if result.status == "planned" else f"{result.status}:"
        print(f"{what} {result.run_id}  {job_overrides()}  ({d.reason})")
        return False
    from benchmark.report.table import headline

    metrics = f"  {headline(result.record)}" if result.record is not None else ""
    print(f"{result.status}: {result.run_id}{metrics}\n  record: {result.run_dir / 'record.json'}")
    return True


def swept(params) -> list[str]:
    """The sweep's overrides: the experiment's ``hydra.sweeper.params``, each replaced by the
    command line's value of the same key (as Hydra's sweeper combines them)."""
    given = command_overrides(sys.argv[1:]) or []
    keys = {o.split("=", 1)[0].lstrip("+~") for o in given}
    return [f"{k}={v}" for k, v in params.items() if k not in keys] + given


def job_overrides() -> str:
    return " ".join(HydraConfig.get().overrides.task) or "(defaults)"


def write_outcome(result, err: BaseException | None = None, **extra: str) -> None:
    """``outcome.json`` in the Hydra job folder: what the sweep summary reads (it works the
    same whether the job ran here, on a Ray worker or under SLURM)."""
    from benchmark.records import strict_json
    from benchmark.records.atomic import write_atomic
    from benchmark.run.experiment import one_line

    outcome = {"overrides": job_overrides(), **extra}
    if result is not None:
        outcome.update(run_id=result.run_id, status=result.status, run_dir=str(result.run_dir))
        if result.decision is not None:
            outcome.update(action=result.decision.action, reason=result.decision.reason)
        if result.status == "failed" and result.record is not None:
            outcome.update(failed_phase=result.record.failed_phase)
    if err is not None:
        outcome.update(status="failed", error=one_line(err))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / OUTCOME_FILE, strict_json.dumps(outcome, indent=2))


def cli() -> None:
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        from benchmark.usage import help_text

        print(help_text(paths.CONF_DIR))
        return
    register_configs()
    mark_invocation()
    problem = preflight(sys.argv[1:], CONF_DIR)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    argv = sys.argv[1:]
    if is_multirun(argv):
        _CLOCK.append(SweepClock(None))  # its size is known once Hydra has composed it
    with contextlib.ExitStack() as stack:
        if is_dry_run(argv):
            sys.argv += scratch_hydra_dirs(stack, argv)
        main()
    if sweep_failed():
        sys.exit(1)


def scratch_hydra_dirs(stack: contextlib.ExitStack, argv: list[str]) -> list[str]:
    """A dry run writes nothing: Hydra's job folders (its config copies, logs and the job
    outcomes the sweep summary reads) go to a temporary folder, removed when the run ends."""
    if any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in argv):
        return []  # the user chose where Hydra writes
    scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="benchmark-dry-run-"))
    return [f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}"]


if __name__ == "__main__":
    cli()
