"""Time one training epoch of each article setup at scale=paper on this machine, and extrapolate
each setup's full paper-scale sweep from it (the budget table of README.md).

    python results/reproduction/paper_scale_probe.py [results dir for the probe runs]

Each probe is one run (PyTorch, seed 0, the article version, one epoch; setup 4 also one
pretraining epoch) of the deep detectors a setup sweeps, on each dataset it sweeps. A full run
is extrapolated as its data, scoring and evaluation phases plus the article's epochs times the
measured epoch; the sweep as that times its frameworks, versions and seeds, with the JAX runs
assumed to take as long as the PyTorch ones (not measured here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

# setup -> (detectors, datasets, epochs, pretraining epochs, runs per detector and dataset)
SETUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int, int, int]] = {
    "paper_1_model_selection": (
        ("lstm", "gru", "transformer"),
        ("synthetic", "yoochoose"),
        10,
        0,
        12,
    ),
    "paper_2_lstm_classifier": (("lstm",), ("synthetic",), 100, 0, 12),
    "paper_3_lstm_forecast": (("lstm",), ("synthetic", "yoochoose"), 10, 0, 12),
    "paper_4_pretrained_transformer_pca": (("transformer",), ("diginetica",), 5, 10, 12),
    "paper_5_multimodal_fusion": (("multimodal",), ("synthetic",), 10, 0, 6),
}


def probe(root: Path, setup: str, model: str, dataset: str, pretrain: int) -> dict:
    args = [
        sys.executable,
        "-m",
        "benchmark",
        f"experiment={setup}",
        "scale=paper",
        f"model={model}",
        f"dataset={dataset}",
        "framework=torch",
        "seed=0",
        "train.epochs=1",
        f"results_dir={root}",
        "logger=none",
        "online.enabled=false",
    ]
    if pretrain:
        args.append("train.pretrain_epochs=1")
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    records = sorted((root / setup).glob("*/record.json"), key=lambda p: p.stat().st_mtime)
    if done.returncode != 0 or not records:
        raise SystemExit(
            f"{setup} {model} {dataset} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return json.loads(records[-1].read_text())


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="paper_probe_"))
    columns = ("one epoch s", "other phases s", "full run h (est.)", "sweep h (est.)")
    print("| setup | detector | dataset | " + " | ".join(columns) + " |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for setup, (models, datasets, epochs, pretrain, runs) in SETUPS.items():
        for model in models:
            for dataset in datasets:
                record = probe(root, setup, model, dataset, pretrain)
                phases = record["phase_seconds"]
                epoch = phases["train"] / (1 + (1 if pretrain else 0))
                other = sum(v for k, v in phases.items() if k != "train")
                full = other + epoch * (epochs + pretrain)
                print(
                    f"| {setup} | {model} | {dataset} | {epoch:.0f} | {other:.0f} | "
                    f"{full / 3600:.2f} | {full * runs / 3600:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
