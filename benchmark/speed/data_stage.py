"""``python -m benchmark.speed.data_stage``: the whole data stage of an own event table of any
size, timed, with the peak memory of every process it uses (its partition workers too).

The table is generated in Taobao's ``UserBehavior.csv`` layout (headerless
``user,item,category,behavior,time``, about 100 events per user, times inside Taobao's
documented window) as CSV or Parquet, kept in ``--folder`` for the next run, and read through
``dataset=events`` with sessions by a 30-minute gap and the default anomaly mix::

    python -m benchmark.speed.data_stage --rows 100000000 --format parquet --folder /data/bench

prints one JSON line: rows, partitions, events prepared, seconds, peak GiB, and the seconds
spent loading and injecting, summed over partitions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from benchmark.paths import CONF_DIR, PROJECT_ROOT
from benchmark.records.atomic import atomic_path

TAOBAO_FIELDS = ["user", "item", "category", "behavior", "time"]
TAOBAO_WINDOW = (1_511_539_200, 1_512_316_800)  # 2017-11-25 .. 2017-12-03 (UTC+8)
CHUNK = 1_000_000
# dataset=events overrides that read such a table (sessions by a 30-minute gap, no cache)
TAOBAO_MAPPING = (
    "dataset=events",
    "dataset.table.user=user",
    "dataset.table.session=null",
    "dataset.table.item=item",
    "dataset.table.category=category",
    "dataset.table.event_type=behavior",
    "dataset.table.timestamp=time",
    "dataset.table.time_unit=s",
    "dataset.table.time_format=null",
    "dataset.table.price=null",
    "dataset.sequence.session_by=gap",
    "dataset.cache=false",
)


def write_taobao_layout(path: Path, rows: int, users: int, seed: int = 0) -> None:
    """``rows`` random rows in the UserBehavior.csv layout (CSV without a header, or Parquet
    when ``path`` ends in .parquet), from ``users`` users, written a million at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    kinds = np.array(["pv", "buy", "cart", "fav"])
    parquet = path.suffix == ".parquet"
    writer = None
    with open(path, "wb") as f:
        for start in range(0, rows, CHUNK):
            m = min(CHUNK, rows - start)
            table = pa.table(
                {
                    "user": rng.integers(1, users, m),
                    "item": rng.integers(1, 5_000_000, m),
                    "category": rng.integers(1, 10_000, m),
                    "behavior": pa.array(kinds[rng.choice(4, m, p=[0.89, 0.02, 0.05, 0.04])]),
                    "time": rng.integers(*TAOBAO_WINDOW, m),
                }
            )
            if parquet:
                writer = writer or pq.ParquetWriter(f, table.schema)
                writer.write_table(table)
            else:
                options = pacsv.WriteOptions(include_header=False, quoting_style="none")
                pacsv.write_csv(table, f, options)
        if writer is not None:
            writer.close()


STAGE = """
import json, sys, time
from benchmark.run.data import prepare_data
from benchmark.speed.data_stage import stage_config
cfg = stage_config(sys.argv[1], sys.argv[2:])
start = time.perf_counter()
data = prepare_data(cfg.dataset, cfg.anomaly, 0)
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "partitions": data.summary["partitions"],
    "events": sum(s["events"] for s in data.summary["splits"].values()),
    # CPU seconds summed over partitions (several run at once)
    "load_cpu_seconds": data.summary["load_seconds"],
    "inject_cpu_seconds": data.summary["inject_seconds"],
}))
"""


def stage_config(path: str, overrides: list[str]):
    """The run config of the data stage on a Taobao-layout table at ``path``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from benchmark.config import register_configs
    from benchmark.run.experiment import as_config

    names = f"[{','.join(TAOBAO_FIELDS)}]"
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"dataset.path={path}",
                *([f"dataset.table.column_names={names}"] if path.endswith(".csv") else []),
                *TAOBAO_MAPPING,
                *overrides,
            ],
        )
    return as_config(cfg)


def tree_peak(command: list[str], every_s: float = 0.1) -> tuple[dict, int]:
    """Run ``command``; (its last stdout line as JSON, the peak of the summed RSS of it and its
    child processes, sampled every ``every_s``). Sampled rather than ``ru_maxrss``: a child's
    starts at its parent's size when forked, and a worker's is not its parent's."""
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as proc:
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:  # a worker ended between listing and reading it
                pass
            time.sleep(every_s)
        out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak


def measure(path: Path, overrides: list[str]) -> dict:
    result, peak = tree_peak([sys.executable, "-c", STAGE, str(path), *overrides])
    return {**result, "peak_gib": round(peak / 2**30, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--folder", type=Path, default=Path(".cache/bench"))
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. dataset.workers=1")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / f"taobao-{args.rows}.{args.format}"
    if not path.exists():  # written under another name first: a killed run leaves no half file
        with atomic_path(path) as partial:
            write_taobao_layout(partial, args.rows, users=max(3, args.rows // 100))
    print(json.dumps({"rows": args.rows, "format": args.format, **measure(path, args.overrides)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
