"""A dataset card: what a dataset holds once loaded and sessionised as configured.

python -m benchmark.run.describe dataset=diginetica
python -m benchmark.run.describe dataset=rees46 dataset.path=data/rees46/2019-Oct.csv \
    dataset.max_rows=1000000

Prints rows, sessions, users, items, categories, the event-type mix, session-length quantiles,
the time span, the modalities and what the loader quarantined. Same overrides as ``benchmark``;
a table beyond ``dataset.memory_gb`` is read once into user partitions and described one
partition at a time, as the data stage reads it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import numpy as np

from benchmark.run.data import drop_counts
from datasets.schema import EVENT_TYPES, MISSING_ID, Dataset, EventTable, session_offsets

QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


class Tally:
    """The card's counts, added up one part of a dataset at a time (a table beyond
    ``dataset.memory_gb`` is described one user partition at a time, in bounded memory: a
    user's events and sessions never span two partitions)."""

    def __init__(self, name: str) -> None:
        self.name, self.rows, self.users = name, 0, 0
        self.modalities: tuple[str, ...] = ("behaviour",)
        self.lengths: list[np.ndarray] = []
        self.items = np.zeros(0, dtype=np.int64)
        self.categories = np.zeros(0, dtype=np.int64)
        self.types = np.zeros(len(EVENT_TYPES), dtype=np.int64)
        self.span = [np.inf, -np.inf]
        self.sources: list[dict] = []
        self.label_counts: list[dict[str, int] | None] = []

    def add(self, dataset: Dataset, sessions: EventTable) -> None:
        e = dataset.events
        self.rows += len(e)
        self.users += len(np.unique(e.user_id))
        self.lengths.append(np.diff(session_offsets(sessions.session_id)).astype(np.int32))
        self.items = np.union1d(self.items, e.item_id[e.item_id != MISSING_ID])
        self.categories = np.union1d(self.categories, e.category_id[e.category_id != MISSING_ID])
        self.types += np.bincount(e.event_type, minlength=len(EVENT_TYPES))
        if len(e):
            self.span = [min(self.span[0], e.timestamp.min()), max(self.span[1], e.timestamp.max())]
        self.modalities = dataset.modalities
        self.sources.append(dict(dataset.source))
        labels = dataset.session_labels
        self.label_counts.append(labels.counts() if labels is not None else None)

    def card(self, source: dict) -> dict:
        """The facts of a dataset card, JSON-ready (``source``: the loader's merged report)."""
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0)
        mix = self.types / max(self.rows, 1)
        relative = "time_origin" in source
        return {
            "dataset": self.name,
            "rows": self.rows,
            "sessions": len(lengths),
            "users": self.users,
            "items": len(self.items),
            "categories": len(self.categories),
            "event_types": {
                t: round(float(m), 4) for t, m in zip(EVENT_TYPES, mix, strict=True) if m
            },
            "session_length_quantiles": {
                f"p{round(q * 100)}": float(np.quantile(lengths, q)) if len(lengths) else None
                for q in QUANTILES
            },
            "time_span_utc": [_utc(t) for t in self.span] if self.rows and not relative else None,
            "time_origin": source.get("time_origin"),
            "modalities": list(self.modalities),
            "source": source,
        }


def card(dataset: Dataset, sessions: EventTable) -> dict:
    """The facts of a dataset card for a dataset in one piece."""
    tally = Tally(dataset.name)
    tally.add(dataset, sessions)
    return tally.card(dict(dataset.source))


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="seconds")


def text(facts: dict) -> str:
    lines = [f"dataset: {facts['dataset']}"]
    for key in ("rows", "sessions", "users", "items", "categories"):
        lines.append(f"  {key}: {facts[key]:,}")
    lines.append(
        "  event types: " + ", ".join(f"{k} {v:.1%}" for k, v in facts["event_types"].items())
    )
    q = facts["session_length_quantiles"]
    lines.append("  session length: " + ", ".join(f"{k} {v:g}" for k, v in q.items()))
    if facts["time_span_utc"]:
        lines.append(
            f"  time span (UTC): {facts['time_span_utc'][0]} .. {facts['time_span_utc'][1]}"
        )
    if facts["time_origin"]:
        lines.append(f"  times are relative: {facts['time_origin']}")
    lines.append(f"  modalities: {', '.join(facts['modalities'])}")
    source = facts["source"]
    for f in source.get("files", []):
        lines.append(f"  file: {f['path']} ({f['bytes']:,} bytes, sha256 {f['sha256'][:12]})")
    if source.get("quarantined"):
        lines.append(f"  rows dropped: {drop_counts(source)}")
        lines += [f"    {example}" for example in source.get("examples", [])]
    if source.get("labels"):
        lines.append(f"  labels: {source['labels']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from benchmark.config import register_configs
    from benchmark.errors import user_error_types
    from benchmark.paths import CONF_DIR
    from benchmark.run.data import partitions_of
    from benchmark.run.experiment import as_config
    from benchmark.run.preflight import compose_config
    from datasets.sessions import sessionize

    register_configs()
    conf_dir = str(CONF_DIR)
    cfg, problem = compose_config(argv, conf_dir)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    config = as_config(cfg)
    seq = config.dataset.sequence
    tally = Tally(config.dataset.name)
    try:
        with partitions_of(config.dataset, config.seed) as source:
            for k in range(len(source)):
                dataset = source.load(k)
                by, gap = seq.session_by, seq.gap_minutes * 60
                tally.add(dataset, sessionize(dataset.events, by=by, gap_seconds=gap))
                del dataset
            report = source.merged(tally.sources, tally.label_counts)
    except user_error_types() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text(tally.card(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
