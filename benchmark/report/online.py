"""The online part of a report: per detector (a selection row, over its seeds) how soon it
raises an alarm after an attack starts, at what false-alarm rate, and what scoring each event
costs; a detection-delay plot per anomaly type and a recommendation per latency budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.evaluation.stats import mean_ci
from benchmark.records.record import Detection, OnlineMetrics
from benchmark.report.selection import Row, _median
from benchmark.report.selection import _mean as mean_of_defined

WITHIN = (1, 3, 5, 10)  # the "detected within k events" columns
BUDGETS_MS = (1.0, 10.0, 100.0)  # per-event latency budgets the recommendation names
RANK_WITHIN = 5  # the recommendation ranks by the share detected within this many events
UNIT = (0.0, 1.0)


@dataclass
class OnlineRow:
    """One detector's online figures over its seeds (means; the interval over seeds where
    there are several)."""

    setting: str
    name: str
    seeds: int
    detection_rate: float
    detection_low: float
    detection_high: float
    within: dict[int, float]  # k -> share of attacks detected within k events
    median_delay_events: float | None
    median_delay_seconds: float | None
    false_alarms_per_1000: float | None
    false_alarms_per_hour: float | None
    per_user_within: float | None  # the per-user adaptive rule: detected within RANK_WITHIN
    per_user_false_alarms_per_1000: float | None
    event_roc_auc: float | None
    curves: dict[str, list[float]]  # "all" and each type -> share detected by k = 1..
    per_type_rate: dict[str, float]
    scorer: str
    state_bytes: int | None
    events_per_s: dict[int, float]  # concurrent users -> events/s (median over seeds)
    latency_p99_ms: float | None  # one user in flight: each call one event


def _mean(values: list[float | None]) -> float | None:
    """The mean of the defined values; None where there is none."""
    mean = mean_of_defined(values)
    return None if math.isnan(mean) else mean


def _curve(detections: list[Detection]) -> list[float]:
    longest = max((len(d.within_events) for d in detections), default=0)
    return [
        _mean([d.within_events[k] if k < len(d.within_events) else None for d in detections]) or 0.0
        for k in range(longest)
    ]


def online_row(row: Row) -> OnlineRow | None:
    """The row's online figures, or None when its runs did not replay the stream."""
    found: list[OnlineMetrics] = [r.online for r in row.records if r.online is not None]
    if not found:
        return None
    rates = [o.alarms.overall.detection_rate or 0.0 for o in found]
    if len(rates) > 1:
        ci = mean_ci(rates, bounds=UNIT)
        rate, low, high = ci.mean, ci.low, ci.high
    else:
        rate = low = high = rates[0]
    alarms = [o.alarms for o in found]
    types = sorted({t for a in alarms for t in a.per_type})
    curves = {"all": _curve([a.overall for a in alarms])}
    curves.update({t: _curve([a.per_type[t] for a in alarms if t in a.per_type]) for t in types})
    per_user = [o.per_user for o in found if o.per_user is not None]
    per_user_curve = _curve([a.overall for a in per_user])
    levels = [lv for o in found for lv in o.cost.get("levels", [])]
    users = sorted({int(lv["users"]) for lv in levels})
    return OnlineRow(
        setting=row.setting,
        name=row.name,
        seeds=len(found),
        detection_rate=rate,
        detection_low=low,
        detection_high=high,
        within={k: curves["all"][k - 1] if k <= len(curves["all"]) else math.nan for k in WITHIN},
        median_delay_events=_mean([a.overall.median_delay_events for a in alarms]),
        median_delay_seconds=_mean([a.overall.median_delay_seconds for a in alarms]),
        false_alarms_per_1000=_mean([a.false_alarms_per_1000_sequences for a in alarms]),
        false_alarms_per_hour=_mean([a.false_alarms_per_hour for a in alarms]),
        per_user_within=(
            per_user_curve[RANK_WITHIN - 1] if len(per_user_curve) >= RANK_WITHIN else None
        ),
        per_user_false_alarms_per_1000=_mean([a.false_alarms_per_1000_sequences for a in per_user]),
        event_roc_auc=_mean([o.event_roc_auc for o in found]),
        curves=curves,
        per_type_rate={
            t: _mean([a.per_type[t].detection_rate for a in alarms if t in a.per_type]) or 0.0
            for t in types
        },
        scorer=str(found[0].cost.get("scorer", "")),
        state_bytes=found[0].cost.get("state_bytes_per_user"),
        events_per_s={
            u: _median([lv["events_per_s"] for lv in levels if lv["users"] == u]) or 0.0
            for u in users
        },
        latency_p99_ms=_median([lv["latency_ms_p99"] for lv in levels if lv["users"] == 1]),
    )


def online_rows(rows: list[Row]) -> list[OnlineRow]:
    """Online figures of every row that has them, best detection within 5 events first."""
    found = [o for o in (online_row(r) for r in rows) if o is not None]
    return sorted(found, key=lambda o: (o.setting, -o.within[RANK_WITHIN], o.name))


def online_recommendations(rows: list[OnlineRow]) -> list[str]:
    """Per per-event latency budget (p99 with one user in flight), the detector that detects
    most attacks within ``RANK_WITHIN`` events among those that fit it."""
    lines = []
    for budget in BUDGETS_MS:
        fits = [
            r
            for r in rows
            if r.latency_p99_ms is not None
            and r.latency_p99_ms <= budget
            and not math.isnan(r.within[RANK_WITHIN])
        ]
        if not fits:
            lines.append(f"p99 per event <= {budget:g} ms: no detector fits")
            continue
        best = max(fits, key=lambda r: (r.within[RANK_WITHIN], -(r.latency_p99_ms or 0.0)))
        lines.append(
            f"p99 per event <= {budget:g} ms: **{best.name}** detects "
            f"{best.within[RANK_WITHIN]:.0%} of attacks within {RANK_WITHIN} events "
            f"(p99 {best.latency_p99_ms:.2f} ms, "
            f"{best.false_alarms_per_1000 or 0:.0f} false alarms per 1,000 normal sequences)"
        )
    return lines


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def detection_table(rows: list[OnlineRow]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of how soon and how often each detector raises alarms."""
    header = [
        "detector",
        "seeds",
        "detected [95% CI]",
        *(f"within {k}" for k in WITHIN),
        "median delay: events",
        "median delay: s",
        "false alarms per 1,000",
        "false alarms per hour",
        "per-event ROC-AUC",
        f"per-user rule: within {RANK_WITHIN}",
        "per-user rule: false alarms",
    ]
    body = [
        [
            r.name,
            str(r.seeds),
            f"{r.detection_rate:.3f} [{r.detection_low:.3f}, {r.detection_high:.3f}]",
            *(_num(r.within[k], ".3f") for k in WITHIN),
            _num(r.median_delay_events, ".1f"),
            _num(r.median_delay_seconds, ".0f"),
            _num(r.false_alarms_per_1000, ".0f"),
            _num(r.false_alarms_per_hour, ".2f"),
            _num(r.event_roc_auc, ".3f"),
            _num(r.per_user_within, ".3f"),
            _num(r.per_user_false_alarms_per_1000, ".0f"),
        ]
        for r in rows
    ]
    return header, body


def cost_table(rows: list[OnlineRow]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of what scoring each event costs each detector."""
    users = sorted({u for r in rows for u in r.events_per_s})
    header = [
        "detector",
        "scorer",
        "state, bytes per user",
        "p99 ms per event, 1 user",
        *(f"events/s, {u:,} {'user' if u == 1 else 'users'}" for u in users),
    ]
    body = [
        [
            r.name,
            r.scorer,
            "-" if r.state_bytes is None else f"{r.state_bytes:,}",
            _num(r.latency_p99_ms, ".2f"),
            *(_num(r.events_per_s.get(u), ",.0f") for u in users),
        ]
        for r in rows
    ]
    return header, body


ONLINE_NOTE = (
    "The test traffic replayed event by event: each event scored as its sequence so far, an "
    "alarm where the score reaches a threshold fitted on validation prefixes (the share of "
    "normal validation sequences alarmed set by online.false_alarm_rate). Delay: events (and "
    "seconds) from an attack's first injected event to the first alarm from there on; "
    "undetected attacks count against 'detected' and 'within k' (the share detected within k "
    "events), never dropped; false alarms: normal test sequences alarmed, per 1,000. The per-user "
    "rule alarms on each score minus its user's running level (the mean of their earlier "
    "scores), with its own threshold fitted the same way. Cost: the "
    "stateful scorer's events/s with that many sequences in flight, and its p99 latency per "
    "call with one (wall time on the report's hardware; compare within one report)."
)
