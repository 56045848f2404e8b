"""A dataset card: what a dataset holds once loaded and sessionised as configured.

python -m benchmark.run.describe dataset=diginetica
python -m benchmark.run.describe dataset=rees46 dataset.path=data/rees46/2019-Oct.csv \
    dataset.max_rows=1000000

Prints rows, sessions, users, items, categories, the event-type mix, session-length quantiles,
the time span, the modalities and what the loader quarantined. Same overrides as ``benchmark``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import numpy as np

from benchmark.run.data import drop_counts
from datasets.schema import EVENT_TYPES, MISSING_ID, Dataset, EventTable, session_offsets

QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def card(dataset: Dataset, sessions: EventTable) -> dict:
    """The facts of a dataset card, JSON-ready."""
    e = dataset.events
    lengths = np.diff(session_offsets(sessions.session_id))
    mix = np.bincount(e.event_type, minlength=len(EVENT_TYPES)) / max(len(e), 1)
    return {
        "dataset": dataset.name,
        "rows": len(e),
        "sessions": len(lengths),
        "users": len(np.unique(e.user_id)),
        "items": len(np.unique(e.item_id[e.item_id != MISSING_ID])),
        "categories": len(np.unique(e.category_id[e.category_id != MISSING_ID])),
        "event_types": {t: round(float(m), 4) for t, m in zip(EVENT_TYPES, mix, strict=True) if m},
        "session_length_quantiles": {
            f"p{round(q * 100)}": float(np.quantile(lengths, q)) if len(lengths) else None
            for q in QUANTILES
        },
        "time_span_utc": [_utc(e.timestamp.min()), _utc(e.timestamp.max())]
        if len(e) and "time_origin" not in dataset.source
        else None,
        "time_origin": dataset.source.get("time_origin"),
        "modalities": list(dataset.modalities),
        "source": dict(dataset.source),
    }


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
    from benchmark.run.data import load_dataset
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
    try:
        dataset = load_dataset(config.dataset, config.seed)
    except user_error_types() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sessions = sessionize(dataset.events, by=seq.session_by, gap_seconds=seq.gap_minutes * 60)
    print(text(card(dataset, sessions)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
