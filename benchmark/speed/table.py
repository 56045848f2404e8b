"""``python -m benchmark.speed``: the timing table of every detector x framework, each beside a
plain reference implementation at the same sizes, measured in one job on one machine.

    python -m benchmark.speed --preset cpu                      # this README's CPU table
    python -m benchmark.speed --preset gpu framework.precision=bf16
    python -m benchmark.speed --models lstm --frameworks jax framework.scan_unroll=8

Trailing ``key=value`` arguments are Hydra overrides of ``conf/`` (model sizes, ``framework.*``
fast-path switches, ``timing.*`` protocol), so a switch's effect is one extra run away. Inputs
are synthetic sequences of full length (every position a real event), so both frameworks see
the same shapes. Each configuration runs in its own process (``--in-process`` to share one):
peak memory is then per configuration, and one configuration cannot slow the next.
Writes ``<out>.json`` (every figure, environment and protocol) and ``<out>.md`` (the table
with JAX/PyTorch and detector/reference ratios).

A ratio is only as good as the two figures were measured alike. Each detector is measured
back to back with its plain reference, and ``--rounds N`` repeats every such pair N times,
flipping which goes first: a figure is the median over the rounds and a ratio the median of
the rounds' own ratios, with their range beside it (a shared machine drifts by tens of
percent over minutes; a pair measured seconds apart drifts much less).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from benchmark.config import register_configs
from benchmark.detectors.registry import DataInfo, DetectorSpec, create, speed_probe
from benchmark.errors import ConfigError
from benchmark.paths import CONF_DIR
from benchmark.records import strict_json
from benchmark.records.atomic import write_atomic
from benchmark.report import render
from benchmark.run.detect import timing_plan
from benchmark.timing.flops import TRAIN_STEP_FACTOR, Sizes, achieved, forward_flops
from benchmark.timing.protocol import batch_size_of, largest_batch, measure
from datasets.features import (
    N_DEVICES,
    N_EVENT_TYPES,
    N_GAP_BUCKETS,
    N_PRICE_BUCKETS,
    QUERY_TOKENS,
    MediaTables,
    SequenceArrays,
)
from models_common.config import MODALITIES

DEEP = ("lstm", "gru", "transformer", "multimodal")
FRAMEWORKS = ("torch", "jax")
IMPLEMENTATIONS = ("detector", "reference")
PROFILE_CARDINALITIES = (8, 12, 5, 9)
N_BRANDS = 200
N_WORDS, N_QUERIES, IMAGE_DIM = 1_000, 256, 64  # the multimodal detector's text and images

# Sizes and protocol per preset; any of them can be overridden after the preset.
PRESETS: dict[str, list[str]] = {
    # The GPU targets: d=128, T=128, 2 layers.
    "gpu": [
        "model.embed_dim=128",
        "model.hidden_dim=128",
        "model.num_layers=2",
        "model.num_heads=4",
        "model.ff_dim=512",
        "dataset.sequence.max_length=128",
        "train.batch_size=1024",
        "timing.batch_sizes=[1,32,256,1024]",
        "timing.windows=3",
        "timing.min_window_s=1.0",
        "timing.latency_requests=1000",
    ],
    # Fits a 2-core CPU in minutes.
    "cpu": [
        "model.embed_dim=64",
        "model.hidden_dim=64",
        "model.num_layers=2",
        "model.num_heads=4",
        "model.ff_dim=256",
        "dataset.sequence.max_length=50",
        "train.batch_size=128",
        "timing.batch_sizes=[1,32,256]",
        "timing.windows=3",
        "timing.min_window_s=1.0",
        "timing.latency_requests=1000",
        "framework.device=cpu",
    ],
    # For bench-compare and the pytest-benchmark suite: seconds per configuration.
    "quick": [
        "model.embed_dim=32",
        "model.hidden_dim=32",
        "model.num_layers=2",
        "model.num_heads=4",
        "model.ff_dim=64",
        "dataset.sequence.max_length=32",
        "train.batch_size=64",
        "timing.batch_sizes=[32]",
        "timing.latency_batch_sizes=[1]",
        "timing.windows=3",
        "timing.min_window_s=0.3",
        "timing.latency_requests=200",
        "timing.warmup_steps=5",
        "framework.device=cpu",
    ],
}


def compose_config(model: str, framework: str, overrides: list[str]):
    from benchmark.run.experiment import as_config

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                config_name="config",
                overrides=[
                    f"model={model}",
                    f"framework={framework}",
                    "objective=classify",
                    "logger=none",
                    "timing=default",
                    *overrides,
                ],
            )
    finally:
        GlobalHydra.instance().clear()
    return as_config(cfg)


def synthetic_batch_source(config, n_items: int, rows: int, seed: int = 0) -> SequenceArrays:
    """``rows`` full-length sequences of random ids within the detector's vocabularies."""
    t = config.dataset.sequence.max_length
    rng = np.random.default_rng(seed)

    def ids(high: int, shape=(rows, t)) -> np.ndarray:
        return rng.integers(1, high, size=shape, dtype=np.int32)

    padded = {
        "event_type": ids(N_EVENT_TYPES),
        "item": ids(n_items),
        "category": ids(64),
        "gap_bucket": ids(N_GAP_BUCKETS),
        "price_bucket": ids(N_PRICE_BUCKETS),
        "device": ids(N_DEVICES),
        "log_gap": rng.random((rows, t), dtype=np.float32),
        "log_price": rng.random((rows, t), dtype=np.float32),
        "event_label": np.zeros((rows, t), dtype=bool),
        "brand": ids(N_BRANDS),
        "query": ids(N_QUERIES + 1),
        "image": ids(n_items),
    }
    arrays = SequenceArrays.from_padded(
        padded,
        np.full(rows, t, dtype=np.int32),
        label=rng.random(rows) < 0.1,
        user_id=np.arange(rows, dtype=np.int64),
        session_id=np.arange(rows, dtype=np.int64),
        profile=np.stack([ids(c, (rows,)) for c in PROFILE_CARDINALITIES], axis=1),
    )
    words = ids(N_WORDS, (N_QUERIES + 1, QUERY_TOKENS))
    words[0] = 0  # row 0: no query
    images = rng.standard_normal((n_items, IMAGE_DIM), dtype=np.float32)
    images[0] = 0.0  # row 0: no image
    return replace(arrays, media=MediaTables(words, images))


def build(model: str, framework: str, overrides: list[str], n_items: int = 10_000):
    """(config, untrained detector, full-length synthetic rows) for one configuration."""
    config = compose_config(model, framework, overrides)
    data = DataInfo(
        max_length=config.dataset.sequence.max_length,
        n_items=n_items,
        n_categories=64,
        n_event_types=N_EVENT_TYPES,
        n_gap_buckets=N_GAP_BUCKETS,
        n_price_buckets=N_PRICE_BUCKETS,
        n_devices=N_DEVICES,
        modalities=MODALITIES,
        profile_cardinalities=PROFILE_CARDINALITIES,
        n_brands=N_BRANDS,
        n_words=N_WORDS,
        image_dim=IMAGE_DIM,
    )
    spec = DetectorSpec(
        model=config.model,
        objective=config.objective,
        train=config.train,
        framework=config.framework,
        data=data,
        seed=config.seed,
    )
    rows = max([*config.timing.batch_sizes, config.train.batch_size])
    return config, create(model, framework, spec), synthetic_batch_source(config, n_items, rows)


def measure_one(model: str, framework: str, implementation: str, overrides: list[str]) -> dict:
    """Every figure of the timing protocol for one configuration, in this process."""
    config, detector, data = build(model, framework, overrides)
    probe = speed_probe(detector, data, framework, implementation)
    figures = measure(probe, timing_plan(config))
    sizes = {k: getattr(config.model, k) for k in ("embed_dim", "hidden_dim", "num_layers")}
    return {
        "model": model,
        "framework": framework,
        "implementation": implementation,
        "n_params": detector.n_params if implementation == "detector" else None,
        "sizes": sizes | {"max_length": config.dataset.sequence.max_length},
        "train_batch_size": config.train.batch_size,
        "overrides": overrides,
        "flops_per_sequence": flops_per_sequence(config, model, implementation),
        "timing": figures,
    }


def flops_per_sequence(config, model: str, implementation: str) -> dict[str, float]:
    """Model FLOPs of one full-length sequence: forward pass and training step."""
    forward = forward_flops(flop_sizes(config, model), implementation)
    return {"forward": forward, "train_step": TRAIN_STEP_FACTOR * forward}


def flop_sizes(config, model: str) -> Sizes:
    """The sizes the model-FLOP count reads (full-length sequences, as measured here)."""
    m = config.model
    return Sizes(
        model=model,
        embed_dim=m.embed_dim,
        hidden_dim=m.hidden_dim,
        num_layers=m.num_layers,
        ff_dim=m.ff_dim,
        length=config.dataset.sequence.max_length,
        objective=config.objective.name.value,
        fusion=m.fusion.value,
        text_dim=m.text_dim if "query_text" in m.modalities else 0,
        query_words=QUERY_TOKENS,
        image_dim=IMAGE_DIM if "item_image" in m.modalities else 0,
        items="item_attributes" in m.modalities,
    )


def measure_ceilings(overrides: list[str]) -> dict:
    """The device's matrix-product and copy ceilings, at the job's device and precision."""
    from benchmark.detectors.adapters.torch_speed import ceilings

    config = compose_config("lstm", "torch", overrides)
    f = config.framework
    return ceilings(f.device, f.precision == "bf16", f.tf32, timing_plan(config).protocol)


def measure_isolated(model: str, framework: str, implementation: str, overrides: list[str]):
    """``measure_one`` in a fresh interpreter; a failure is recorded, not raised."""
    entry = {"model": model, "framework": framework, "implementation": implementation}
    return in_fresh_process(["--one", model, framework, implementation, *overrides], entry)


def in_fresh_process(args: list[str], on_failure: dict) -> dict:
    """``python -m benchmark.speed *args --json F`` in a fresh interpreter: F's contents, or
    ``on_failure`` with the error's last line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one.json"
        cmd = [sys.executable, "-m", "benchmark.speed", "--json", str(out), *args]
        # JAX's memory figure means what it says only without preallocation.
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} | dict(os.environ)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return on_failure | {"error": tail[0]}
        return json.loads(out.read_text())


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


HEADLINE_FIGURES = ("infer", "train", "p99_b1", "p99_b32", "first_call", "peak_mb")


def headline(entry: dict) -> dict[str, float | None]:
    """The figures a table shows for one configuration."""
    t = entry.get("timing", {})
    inference = t.get("inference", {})
    largest = largest_batch(inference)
    lat = t.get("latency_ms", {})
    return {
        "infer": inference[largest]["seq_per_s"] if largest else None,
        "train": t.get("train", {}).get("seq_per_s"),
        "p99_b1": lat.get("batch_1", {}).get("p99"),
        "p99_b32": lat.get("batch_32", {}).get("p99"),
        "first_call": max((v["first_call_s"] for v in inference.values()), default=None),
        "peak_mb": t.get("peak_memory_mb"),
        "largest_batch": batch_size_of(largest) if largest else None,
    }


def median_headline(entries: list[dict]) -> dict[str, float | None]:
    """Each headline figure's median over the rounds that measured it."""
    heads = [headline(e) for e in entries if "timing" in e]
    out: dict[str, float | None] = {}
    for name in HEADLINE_FIGURES:
        values = [float(v) for h in heads if (v := h[name]) is not None]
        out[name] = float(np.median(values)) if values else None
    out["largest_batch"] = next((h["largest_batch"] for h in heads), None)
    return out


def paired_ratios(
    mine: list[dict], other: list[dict], figure: str
) -> tuple[float | None, float | None, float | None]:
    """Median, min and max over rounds of ``figure`` in ``mine`` / ``other`` of the same
    round (an entry without a round number is round 0)."""
    theirs = {e.get("round", 0): headline(e)[figure] for e in other if "timing" in e}
    ratios = [
        r
        for e in mine
        if "timing" in e
        for r in [ratio(headline(e)[figure], theirs.get(e.get("round", 0)))]
        if r is not None
    ]
    if not ratios:
        return None, None, None
    return float(np.median(ratios)), min(ratios), max(ratios)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def _fmt_ratio(median: float | None, low: float | None, high: float | None) -> str:
    """'0.91' from one round, '0.91 (0.85-0.97)' from several."""
    if median is None:
        return "-"
    if low == high:
        return _fmt(median)
    return f"{_fmt(median)} ({_fmt(low)}-{_fmt(high)})"


def group_runs(entries: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Entries by (model, framework, implementation): one per round."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for e in entries:
        groups.setdefault((e["model"], e["framework"], e["implementation"]), []).append(e)
    return groups


def row_name(model: str, implementation: str) -> str:
    return model if implementation == "detector" else f"{model} (plain ref.)"


def table(entries: list[dict]) -> str:
    """Markdown: one row per model x framework; reference figures and ratios beside. With
    several rounds, figures are medians and ratios medians of same-round ratios (range)."""
    by_key = group_runs(entries)
    batch = next((headline(e)["largest_batch"] for e in entries if "timing" in e), None)
    header = [
        "model",
        "framework",
        f"infer seq/s (b{batch})",
        "train seq/s",
        "p99 ms b1",
        "p99 ms b32",
        "first call s",
        "peak MB",
        "infer / plain",
        "train / plain",
        "infer JAX/PyTorch",
        "train JAX/PyTorch",
    ]
    rows: list[list[str]] = []
    models = sorted({e["model"] for e in entries}, key=lambda m: DEEP.index(m))
    for model in models:
        for framework in FRAMEWORKS:
            for impl in IMPLEMENTATIONS:
                runs = by_key.get((model, framework, impl))
                if not runs:
                    continue
                name = row_name(model, impl)
                failed = next((e for e in runs if "error" in e), None)
                if failed is not None:
                    rows.append([name, framework, f"failed: {failed['error']}"])
                    continue
                h = median_headline(runs)
                ref = by_key.get((model, framework, "reference"), [])
                peer = by_key.get((model, "torch", impl), [])
                mine = impl == "detector"
                row = [
                    name,
                    framework,
                    _fmt(h["infer"]),
                    _fmt(h["train"]),
                    _fmt(h["p99_b1"]),
                    _fmt(h["p99_b32"]),
                    _fmt(h["first_call"]),
                    _fmt(h["peak_mb"]),
                    _fmt_ratio(*paired_ratios(runs, ref, "infer")) if mine else "",
                    _fmt_ratio(*paired_ratios(runs, ref, "train")) if mine else "",
                    _fmt_ratio(*paired_ratios(runs, peer, "infer")) if framework == "jax" else "",
                    _fmt_ratio(*paired_ratios(runs, peer, "train")) if framework == "jax" else "",
                ]
                rows.append(row)
    return render.markdown(header, rows)


def describe(entries: list[dict]) -> str:
    """Where and how it was measured: the first entry's environment and protocol."""
    first = next((e for e in entries if "timing" in e), None)
    if first is None:
        return "No configuration was measured."
    t = first["timing"]
    env, p = t["environment"], t["protocol"]
    return (
        f"Device: {env.get('device')} (driver {env.get('driver') or '-'}); "
        f"{env.get('framework')} {env.get('version')}; precision: "
        f"{env.get('precision', {}).get('compute')}; sizes: {first['sizes']}, train batch "
        f"{first['train_batch_size']}. Protocol: {p['windows']} windows of >= "
        f"{p['min_window_s']} s after {p['warmup']} warm-up calls, latency over "
        f"{p['latency_requests']} end-to-end requests{allocator_note(p)}.{rounds_note(entries)}"
    )


def allocator_note(protocol: dict) -> str:
    """How the C allocator was set (records from before it was pinned say nothing)."""
    if "allocator" not in protocol:
        return ""
    return f"; C allocator: {protocol['allocator']}"


def rounds_note(entries: list[dict]) -> str:
    rounds = len({e.get("round", 0) for e in entries})
    if rounds == 1:
        return ""
    return (
        f" {rounds} rounds, each detector back to back with its reference (order flipped every"
        " round): figures are medians over the rounds, ratios the median of the same-round"
        " ratios (min-max)."
    )


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m benchmark.speed", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--models", default=",".join(DEEP))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--out", type=Path, default=None, help="path stem of .json and .md")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure each detector/reference pair N times"
    )
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "FRAMEWORK", "IMPL"))
    parser.add_argument("--json", type=Path, help="with --one: where to write its figures")
    parser.add_argument(
        "--ceilings", action="store_true", help="with --json: measure the device's ceilings only"
    )
    parser.add_argument("--no-ceilings", action="store_true", help="skip the ceilings")
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="tables of earlier jobs (.json) into one (--out)"
    )
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        parser.error(f"unknown arguments {bad}: options start with --, overrides are key=value")
    return args, overrides


def choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    picked = [x for x in text.split(",") if x]
    unknown = sorted(set(picked) - set(allowed))
    if unknown:
        raise ConfigError(f"{what} {unknown} unknown; choose from {list(allowed)}")
    return picked


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    if args.one or args.ceilings:
        if args.one:
            model, framework, implementation = args.one
            found = measure_one(model, framework, implementation, overrides)
        else:
            found = measure_ceilings(overrides)
        args.json.write_text(strict_json.dumps(found, indent=2))
        return 0
    if args.merge:
        jobs = [json.loads(p.read_text()) for p in args.merge]
        merged = [e for job in jobs for e in job["entries"]]
        roofs = next((job["ceilings"] for job in jobs if job.get("ceilings")), None)
        print(write_outputs(args.out, jobs[0]["preset"], jobs[0]["overrides"], merged, roofs))
        return 0
    try:
        models = choices(args.models, DEEP, "--models")
        frameworks = choices(args.frameworks, FRAMEWORKS, "--frameworks")
        impls = choices(args.implementations, IMPLEMENTATIONS, "--implementations")
        if args.rounds < 1:
            raise ConfigError(f"--rounds {args.rounds} must be >= 1")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    overrides = PRESETS[args.preset] + overrides
    run = (lambda *a: measure_one(*a)) if args.in_process else measure_isolated
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("results") / "speed" / f"speed-{args.preset}-{stamp}"
    out.parent.mkdir(parents=True, exist_ok=True)
    roofs = None
    if not args.no_ceilings:
        roofs = in_fresh_process(["--ceilings", *overrides], {})
        print(f"ceilings: {roofs}", flush=True)
    entries: list[dict] = []
    text = ""
    # Each detector back to back with its reference, the pair's order flipped every round;
    # the files are rewritten after every configuration, so an interrupted job keeps what it
    # measured.
    for round_no, model, framework, impl in schedule(args.rounds, models, frameworks, impls):
        entry = run(model, framework, impl, overrides) | {"round": round_no}
        entries.append(entry)
        figures = headline(entry) if "timing" in entry else entry
        print(f"round {round_no}: {model}/{framework}/{impl}: {figures}", flush=True)
        text = write_outputs(out, args.preset, overrides, entries, roofs)
    print(text)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def schedule(
    rounds: int, models: list[str], frameworks: list[str], impls: list[str]
) -> list[tuple[int, str, str, str]]:
    """(round, model, framework, implementation) in measuring order: the implementations of
    one model x framework back to back, their order reversed every other round."""
    return [
        (r, model, framework, impl)
        for r in range(rounds)
        for model in models
        for framework in frameworks
        for impl in (impls if r % 2 == 0 else impls[::-1])
    ]


def write_outputs(
    out: Path, preset: str, overrides: list[str], entries: list[dict], roofs: dict | None = None
) -> str:
    payload = {"preset": preset, "overrides": overrides, "ceilings": roofs, "entries": entries}
    write_atomic(out.with_suffix(".json"), strict_json.dumps(payload, indent=2))
    text = f"# Speed ({preset})\n\n{describe(entries)}\n\n{table(entries)}\n"
    if any("timing" in e for e in entries):
        text += f"\n## Against the device's ceilings\n\n{roofline(entries, roofs)}\n"
    write_atomic(out.with_suffix(".md"), text)
    return text


def roofline(entries: list[dict], roofs: dict | None) -> str:
    """The measured ceilings, then each configuration's achieved model GFLOP/s and its share
    of the matrix-product ceiling (see benchmark.timing.flops for what is counted)."""
    peak = None
    if not roofs:
        head = "Ceilings not measured in this job (shares of the ceiling left blank)."
    elif "error" in roofs:
        head = f"Ceilings not measured: {roofs['error']}"
    else:
        peak, copy = roofs["matmul"]["per_s"], roofs["copy"]
        head = (
            f"Matrix-product ceiling: {peak / 1e9:,.1f} GFLOP/s ({roofs['matmul']['n']}^2 "
            f"matrices, {roofs['matmul']['dtype']}); copy bandwidth: {copy['per_s'] / 1e9:,.1f} "
            f"GB/s ({copy['bytes'] / 2**20:,.0f} MiB read and written)."
        )
    lines = [
        f"{head} Model FLOPs: matrix products and attention contractions only (two per "
        "multiply-add, `benchmark/timing/flops.py`); a training step counts three forward passes.",
        "",
    ]
    header = [
        "model",
        "framework",
        "fwd MFLOP/seq",
        "infer GFLOP/s",
        "infer % of ceiling",
        "train GFLOP/s",
        "train % of ceiling",
    ]
    rows = []
    timed = group_runs([e for e in entries if "timing" in e])
    for (model, framework, impl), runs in sorted(timed.items(), key=_row_order):
        h, flops = median_headline(runs), entry_flops(runs[0])
        infer = achieved(h["infer"], flops["forward"])
        train = achieved(h["train"], flops["train_step"])
        cells = [row_name(model, impl), framework, _fmt(flops["forward"] / 1e6)]
        for rate in (infer, train):
            cells += [_fmt(rate and rate / 1e9), _fmt(rate and peak and 100 * rate / peak)]
        rows.append(cells)
    return "\n".join([*lines, render.markdown(header, rows)])


def entry_flops(entry: dict) -> dict[str, float]:
    """An entry's model FLOPs per sequence; entries written before they were recorded get
    them from their own config overrides."""
    if "flops_per_sequence" in entry:
        return entry["flops_per_sequence"]
    model = entry["model"]
    config = compose_config(model, entry["framework"], entry.get("overrides", []))
    return flops_per_sequence(config, model, entry["implementation"])


def _row_order(item) -> tuple[int, int, int]:
    (model, framework, impl), _ = item
    return DEEP.index(model), FRAMEWORKS.index(framework), IMPLEMENTATIONS.index(impl)
