"""``python -m benchmark --help``: what the tool does, its config groups and example commands.

Written from the ``conf/`` folder (no config is composed, nothing heavy is imported), so it
answers at once and always lists the options that exist. The schemas registered in code (e.g.
``dataset/synthetic_schema``) are not options and are not listed. ``--hydra-help`` still shows
Hydra's own flags, and ``--cfg job`` the composed config.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

# One line per config group; a test checks that every group under conf/ has one.
GROUPS: dict[str, str] = {
    "experiment": "a complete study: data, anomalies, detectors and settings (start here)",
    "dataset": "where the events come from: synthetic, a public dataset, your own table (events)",
    "anomaly": "which anomaly types are injected, at what rate and severity",
    "setting": "which labels training may use (supervised, semi_supervised, unsupervised)",
    "model": "the detector: a deep model or a baseline",
    "framework": "PyTorch or JAX/Flax for the deep models (baselines ignore it)",
    "objective": "what a deep model is trained to do, and so how it scores",
    "train": "epochs, batch size, learning rate, early stopping",
    "timing": "the throughput, latency and memory protocol run after the metrics",
    "logger": "Weights & Biases: offline (default), online, or none",
    "debug": "debug=fast: a tiny run to check a change end to end",
    "hydra": "hydra/launcher=...: run a sweep's jobs in parallel or on a cluster",
}

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("python -m benchmark", "the default experiment: an LSTM on synthetic data, CPU"),
    (
        "python -m benchmark model=transformer framework=jax",
        "another detector in the other framework",
    ),
    (
        "python -m benchmark -m experiment=default seed=0,1,2 model=lstm,gru,iforest",
        "a sweep; ends with the model-selection report",
    ),
    (
        "python -m benchmark dataset=yoochoose dataset.path=data/yoochoose-clicks.dat",
        "a public dataset from your copy of its file",
    ),
    (
        "python -m benchmark dataset=events dataset.path=shop.parquet dataset.table.user=uid",
        "your own event table, its columns named under dataset.table (docs/datasets.md)",
    ),
    (
        "python -m benchmark -m experiment=default seed=0,1 dry_run=true",
        "what a sweep would run or skip, writing nothing",
    ),
)

INTRO = """\
Anomaly detection on e-commerce clickstreams: injects labelled anomalies (bots, fraud, price
outliers, ...) into synthetic or public event data, trains and scores a detector (Transformer,
LSTM, GRU, multimodal attention in PyTorch or JAX; or a baseline), and records accuracy, speed
and memory in results/<experiment>/<run id>/record.json.

usage: python -m benchmark [-m] [group=option ...] [key=value ...]
  -m, --multirun   sweep: comma-separated values run as separate jobs (a, b, c)
  --cfg job        print the composed config instead of running
  --hydra-help     Hydra's own flags"""


def options(conf_dir: Path, group: str) -> list[str]:
    """The options of a config group: its YAML files (recursively for ``hydra``)."""
    folder = conf_dir / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def help_text(conf_dir: Path) -> str:
    groups = sorted(
        (p.name for p in conf_dir.iterdir() if p.is_dir()),
        key=lambda g: list(GROUPS).index(g) if g in GROUPS else len(GROUPS),
    )
    width = max(len(g) for g in groups)
    lines = [INTRO, "", "config groups (group=option):"]
    for group in groups:
        indent = " " * (width + 6)
        lines.append(f"  {group:<{width}}  {GROUPS.get(group, '')}")
        lines.append(
            textwrap.fill(
                ", ".join(options(conf_dir, group)),
                96,
                initial_indent=indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
        )
    lines += ["", "examples:"]
    for command, what in EXAMPLES:
        lines += [f"  {command}", f"      {what}"]
    lines += ["", "Every key and its meaning: docs/configuration.md."]
    return "\n".join(lines)
