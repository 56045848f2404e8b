"""``python -m benchmark.speed.compare --ref REF``: is this checkout slower than REF?

Both versions are measured in one job on this machine, configuration by configuration, the
two sides of a benchmark seconds apart, and in alternating order (REF first in odd rounds,
current first in even ones: the side that runs second can measure systematically
differently), so drift of the machine hits both alike. REF is checked out into a temporary
``git worktree``; each side runs ``python -m benchmark.speed`` from its own tree. Throughput is
compared on each side's best window, latency on its fastest request. Per benchmark (model x
framework x figure) the ratio current/REF is taken per round; the median ratio decides, the
spread is printed beside it. Exit status 1 when any median ratio falls below ``1 - threshold``
(default: 15% slower). Numbers stored from another machine are never used.

    make bench-compare REF=HEAD~3
    python -m benchmark.speed.compare --ref main --rounds 5 --models lstm --frameworks torch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmark.paths import PROJECT_ROOT
from benchmark.records import strict_json
from benchmark.timing.protocol import largest_batch

# figure name -> (how to read it from an entry's timing, higher is better?)
# Each side's best window and fastest request: interference from other load only ever slows
# work down, so the best figure is the one least disturbed by it (the median latency of
# identical code differed by 25% between the sides on a shared 2-core VM).
FIGURES = {
    "train seq/s": (lambda t: _best(t.get("train")), True),
    "infer seq/s": (lambda t: _best(_largest_batch(t.get("inference", {}))), True),
    "best latency b1": (lambda t: t.get("latency_ms", {}).get("batch_1", {}).get("min"), False),
}


class CompareError(Exception):
    """A reference that cannot be measured (unknown ref, or older than the speed module)."""


def _largest_batch(inference: dict) -> dict | None:
    if not inference:
        return None
    return inference[largest_batch(inference)]


def _best(figure: dict | None) -> float | None:
    if not figure:
        return None
    return figure.get("seq_per_s_spread", {}).get("max", figure["seq_per_s"])


def git(*args: str, cwd: Path = PROJECT_ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CompareError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def add_worktree(ref: str, where: Path) -> Path:
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    git("worktree", "add", "--detach", str(where), sha)
    # `python -m benchmark.speed` is a module before the package layout, a package after it.
    speed = where / "benchmark" / "speed"
    if not (speed.with_suffix(".py").exists() or (speed / "__main__.py").exists()):
        git("worktree", "remove", "--force", str(where))
        raise CompareError(
            f"{ref} ({sha[:10]}) predates `python -m benchmark.speed`: pick a later reference"
        )
    return where


def measure_side(tree: Path, out: Path, speed_args: list[str]) -> dict:
    """One run of the speed benchmark with ``tree``'s code (its directory first on the path)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "benchmark.speed", "--in-process", "--out", str(out)]
    done = subprocess.run(
        cmd + speed_args, cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CompareError(f"the speed benchmark failed in {tree.name}: " + " | ".join(tail))
    return json.loads(out.with_suffix(".json").read_text())


def figures_of(job: dict) -> dict[str, float]:
    """``model/framework/implementation: figure`` -> value, higher is better (latency is
    inverted so every ratio reads the same way)."""
    out = {}
    for e in job["entries"]:
        if "timing" not in e:
            continue
        for name, (read, higher_better) in FIGURES.items():
            value = read(e["timing"])
            if value:
                key = f"{e['model']}/{e['framework']}/{e['implementation']}: {name}"
                out[key] = value if higher_better else 1.0 / value
    return out


def compare(rounds: list[tuple[dict, dict]], threshold: float) -> tuple[list[dict], bool]:
    """Per benchmark: the median of the per-round ratios current/ref, and its spread."""
    per_round = [(figures_of(ref), figures_of(cur)) for ref, cur in rounds]
    keys = sorted(set.intersection(*(set(r) & set(c) for r, c in per_round)))
    rows, ok = [], True
    for key in keys:
        ratios = np.array([c[key] / r[key] for r, c in per_round])
        median = float(np.median(ratios))
        slower = median < 1.0 - threshold
        ok &= not slower
        rows.append(
            {
                "benchmark": key,
                "median_ratio": median,
                "min": float(ratios.min()),
                "max": float(ratios.max()),
                "verdict": "SLOWER" if slower else "ok",
            }
        )
    return rows, ok


def render(rows: list[dict], ref: str, threshold: float) -> str:
    lines = [
        f"current / {ref} (> 1: current is faster; fails below {1 - threshold:.2f})",
        f"{'benchmark':58} {'median':>7} {'min':>7} {'max':>7}  verdict",
    ]
    for r in rows:
        lines.append(
            f"{r['benchmark']:58} {r['median_ratio']:7.3f} {r['min']:7.3f} {r['max']:7.3f}  "
            f"{r['verdict']}"
        )
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m benchmark.speed.compare", description=__doc__)
    p.add_argument("--ref", required=True, help="git ref to compare against (e.g. HEAD~3)")
    p.add_argument("--rounds", type=int, default=4, help="even: each order runs equally often")
    p.add_argument("--threshold", type=float, default=0.15)
    p.add_argument("--preset", default="quick")
    p.add_argument("--models", default="lstm,transformer")
    p.add_argument("--frameworks", default="torch,jax")
    p.add_argument("--json", type=Path, help="also write the comparison here")
    args, overrides = p.parse_known_args(argv)
    if args.rounds < 1 or not 0 < args.threshold < 1:
        p.error("--rounds must be >= 1 and --threshold in (0, 1)")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    speed_args = [
        "--preset",
        args.preset,
        "--implementations",
        "detector",
        "timing.min_window_s=1.0",  # the quick preset's 0.3 s windows are too noisy for a gate
        *overrides,
    ]
    tmp = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        ref_tree = add_worktree(args.ref, tmp / "ref")
        rounds = []
        for i in range(args.rounds):
            jobs: dict[str, dict] = {"ref": {"entries": []}, "cur": {"entries": []}}
            # Configuration by configuration, the two sides back to back: seconds apart.
            for model in args.models.split(","):
                for framework in args.frameworks.split(","):
                    sides = [("ref", ref_tree), ("cur", PROJECT_ROOT)]
                    for name, tree in sides if i % 2 == 0 else sides[::-1]:
                        scope = ["--models", model, "--frameworks", framework]
                        job = measure_side(tree, tmp / f"{name}-{i}", speed_args + scope)
                        jobs[name]["entries"] += job["entries"]
            rounds.append((jobs["ref"], jobs["cur"]))
            print(f"round {i + 1}/{args.rounds} done", flush=True)
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if (tmp / "ref").exists():
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tmp / "ref")], cwd=PROJECT_ROOT
            )
        shutil.rmtree(tmp, ignore_errors=True)
    rows, ok = compare(rounds, args.threshold)
    print(render(rows, args.ref, args.threshold))
    if args.json:
        args.json.write_text(strict_json.dumps({"ref": args.ref, "rows": rows, "ok": ok}, indent=2))
    if not ok:
        print(f"FAILED: slower than {args.ref} beyond {args.threshold:.0%}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
