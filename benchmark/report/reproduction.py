"""``python -m benchmark.report.reproduction [results dir]``: the claimed-vs-measured table of the
article reproductions (``conf/experiment/paper_*.yaml``), built from their run records only.

What each article claims lives in its experiment config (``reproduction.claimed``), which every
run record carries in ``config``: this module holds no numbers of its own. A claimed number is
called reproduced only when it lies inside the 95% interval of the measured mean over seeds;
otherwise the table says by how much it differs, beside the facts that explain such gaps
(the accuracy of always answering "normal", the threshold rule, the ranking quality).
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmark.evaluation.stats import MeanCI, mean_ci
from benchmark.records.atomic import write_atomic
from benchmark.records.identity import (
    BASELINE_FRAMEWORK,
    NOISE_KEYS,
    ignored_sections,
    replicate_key,
)
from benchmark.records.locks import sole_writer
from benchmark.records.record import RunRecord, RunStatus
from benchmark.report import render, table
from benchmark.report.page import failure_line
from benchmark.report.selection import (
    differing_keys,
    latest_per_run,
    nan_lowest,
    one_per_seed,
)

PREFIX = "paper_"
OUT_DIR = "reproduction"
# The article metrics beside the threshold-free ranking metrics every setup gets.
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
# Figures of a training log (an article that claims its training curve): name -> (history
# field, epoch index). Present for the runs whose history has the field (classifiers).
TRAINING_LOG: dict[str, tuple[str, int]] = {
    "train_loss_first_epoch": ("train_loss", 0),
    "train_loss_last_epoch": ("train_loss", -1),
    "train_accuracy_first_epoch": ("train_accuracy", 0),
    "train_accuracy_last_epoch": ("train_accuracy", -1),
}
UNBOUNDED = ("train_loss_first_epoch", "train_loss_last_epoch")  # not clipped to [0, 1]
THRESHOLD_WORDS = {
    "fixed": "a fixed threshold ({value:g} on the score; for classifiers the logit, i.e. a "
    "sigmoid output of 0.5), not fitted",
    "balanced": "the validation threshold where false-positive and false-negative rates meet",
    "max_f1": "the validation threshold of best F1",
    "fpr": "the validation threshold at a target false-positive rate",
}


@dataclass(frozen=True)
class Group:
    """One row of a setup's table: the runs (seeds) of one configuration, named by its
    detection setting, scale, variant, dataset, model and framework."""

    setting: str
    scale: str
    version: str  # "article" (as written) or "harness" (the project's own head and losses)
    dataset: str
    model: str
    framework: str
    metrics: dict[str, MeanCI]
    majority_accuracy: MeanCI  # accuracy of calling every test sequence normal
    seeds: tuple[int, ...]
    train_majority_accuracy: MeanCI  # share of the largest class (normal) in training
    alternative_roc_auc: dict[str, MeanCI]  # other scores of the same runs (e.g. beside PCA)
    variant: str = ""  # config keys it differs on from a group of the same name, if any

    @property
    def label(self) -> str:
        version = f" ({self.version})" if self.version else ""
        return self.model + version + (f" [{self.variant}]" if self.variant else "")

    @property
    def name(self) -> str:
        """Every name of the row, for the notes and the verdict columns."""
        return " / ".join((self.setting, self.scale, self.dataset, self.label, self.framework))

    @property
    def ranked_among(self) -> tuple[str, str, str]:
        """Rows are ranked only against rows of the same setting, scale and dataset."""
        return (self.setting, self.scale, self.dataset)


@dataclass(frozen=True)
class Setup:
    experiment: str
    meta: dict
    threshold: str
    fixed_threshold: float
    groups: list[Group]
    failed: list[RunRecord]


def load_records(root: Path) -> dict[str, list[RunRecord]]:
    """Run records of every ``paper_*`` experiment folder under ``root``, by experiment."""
    found = {
        folder.name: table.load_records(folder)
        for folder in sorted(Path(root).glob(f"{PREFIX}*"))
        if folder.is_dir()
    }
    return {name: records for name, records in found.items() if records}


def majority_accuracy(record: RunRecord) -> float:
    """Accuracy of a detector that calls everything normal, on this run's test split."""
    m = record.result
    return 1.0 - m.n_test_anomalies / m.n_test


def training_log(record: RunRecord) -> dict[str, float]:
    """The TRAINING_LOG figures of one run (those its history has)."""
    history = record.training.get("history") or []
    return {
        name: float(history[epoch][field])
        for name, (field, epoch) in TRAINING_LOG.items()
        if history and field in history[epoch]
    }


def run_metrics(runs: list[RunRecord]) -> dict[str, MeanCI]:
    """Mean and interval over runs of each test metric and each training-log figure that
    every run has."""
    logs = [training_log(r) for r in runs]
    found = {m: [getattr(r.result, m) for r in runs] for m in METRICS}
    for name in TRAINING_LOG:
        if all(name in log for log in logs):
            found[name] = [log[name] for log in logs]
    return {name: mean_ci(values) for name, values in found.items()}


def alternative_roc_auc(runs: list[RunRecord]) -> dict[str, MeanCI]:
    """ROC-AUC of each alternative score every run recorded (the objective's own score and
    the other PCA statistic when a setup scores by PCA), mean over runs."""
    found = [r.result.alternative_roc_auc for r in runs]
    names = set.intersection(*(set(f) for f in found)) if found else set()
    return {name: mean_ci([f[name] for f in found]) for name in sorted(names)}


def train_majority_accuracy(record: RunRecord) -> float:
    """Training accuracy of always answering "normal" (the largest class)."""
    return 1.0 - record.data["splits"]["train"]["contamination"]


def row_variants(by_row: dict[tuple, list[RunRecord]]) -> dict[tuple, str]:
    """For rows sharing every name (setting, scale, version, dataset, model, framework): the
    config keys they differ on."""
    out = dict.fromkeys(by_row, "")
    names: dict[tuple, list[tuple]] = defaultdict(list)
    for key in by_row:
        names[key[:-1]].append(key)
    for keys in names.values():
        if len(keys) > 1:
            configs = [by_row[k][0].config for k in keys]
            ignore = ("seed", *NOISE_KEYS, *ignored_sections(by_row[keys[0]][0].framework))
            out.update(zip(keys, differing_keys(configs, ignore), strict=True))
    return out


def row_names(record: RunRecord) -> tuple[str, str, str, str, str, str]:
    """(setting, scale, version, dataset, model, framework) of a run: its row's name. A
    baseline has no version (it has no head or loss to change)."""
    meta = record.config.get("reproduction") or {}
    version = "" if record.framework == BASELINE_FRAMEWORK else str(meta.get("variant") or "")
    scale = str(record.config.get("scale") or "")
    return (record.setting, scale, version, record.dataset, record.model, record.framework)


def summarise(experiment: str, records: list[RunRecord]) -> Setup:
    ok = [r for r in records if r.is_ok]
    failed = [r for r in records if r.status == RunStatus.failed]
    if not ok and not failed:
        raise ValueError(f"{experiment}: no finished runs")
    config = (ok or failed)[0].config
    # Pooled as seeds only when the configs differ in the seed alone (so scale=ci and
    # scale=paper runs, or two sweeps of other sizes, are rows of their own), one run per seed.
    by_row: dict[tuple[str, ...], list[RunRecord]] = defaultdict(list)
    for r in latest_per_run(ok):
        by_row[(*row_names(r), replicate_key(r.config, r.framework))].append(r)
    variants = row_variants(by_row)
    groups = [
        Group(
            setting=setting,
            scale=scale,
            version=version,
            dataset=dataset,
            model=model,
            framework=framework,
            metrics=run_metrics(runs),
            majority_accuracy=mean_ci([majority_accuracy(r) for r in runs]),
            seeds=tuple(r.seed for r in runs),
            train_majority_accuracy=mean_ci([train_majority_accuracy(r) for r in runs]),
            alternative_roc_auc=alternative_roc_auc(runs),
            variant=variants[key],
        )
        for key, runs in sorted((k, one_per_seed(v)) for k, v in by_row.items())
        for setting, scale, version, dataset, model, framework, _ in [key]
    ]
    ev = config["evaluation"]
    return Setup(
        experiment=experiment,
        meta=config.get("reproduction") or {},
        threshold=ev["threshold"],
        fixed_threshold=ev.get("fixed_threshold", 0.0),
        groups=groups,
        failed=failed,
    )


def verdict(claimed: float, measured: MeanCI) -> str:
    """'reproduced' only when the claim lies inside the measured 95% interval."""
    if measured.n < 2 or math.isnan(measured.low):
        return f"not comparable (one seed: {measured.mean:.3f})"
    if measured.low <= claimed <= measured.high:
        return "reproduced (inside the 95% interval)"
    return f"not reproduced: measured {measured.mean - claimed:+.3f} from the claim"


def gap_facts(setup: Setup) -> list[str]:
    """Short, factual statements that bear on any gap between claims and measurements."""
    rule = THRESHOLD_WORDS.get(setup.threshold, setup.threshold)
    return ["Decisions use " + rule.format(value=setup.fixed_threshold) + "."]


def gap_table(setup: Setup) -> str:
    """One line per row of the setup: accuracy beside calling every test sequence normal (the
    class imbalance), ROC-AUC (the ranking, whatever the threshold), the ROC-AUC of the runs'
    other scores where they hold some, and, where the runs log it, training accuracy in the
    first and last epoch beside always answering the largest class (normal)."""
    others = sorted({name for g in setup.groups for name in g.alternative_roc_auc})
    logged = any("train_accuracy_first_epoch" in g.metrics for g in setup.groups)
    header = ["row", "accuracy", "all normal", "roc_auc", *(f"roc_auc ({n})" for n in others)]
    if logged:
        header += ["train accuracy, first epoch", "last epoch", "largest class (train)"]
    rows = []
    for g in setup.groups:
        row = [g.name, _mean(g.metrics["accuracy"]), _mean(g.majority_accuracy)]
        row.append(_mean(g.metrics["roc_auc"]))
        row += [_mean(g.alternative_roc_auc.get(name)) for name in others]
        if logged:
            row += [_mean(g.metrics.get(f"train_accuracy_{e}_epoch")) for e in ("first", "last")]
            row.append(_mean(g.train_majority_accuracy))
        rows.append(row)
    return render.markdown(header, rows)


def _mean(ci: MeanCI | None) -> str:
    """The mean alone, as :func:`_cell` shows it (empty where a row has no such figure)."""
    if ci is None:
        return ""
    return "n/a" if math.isnan(ci.mean) else f"{ci.mean:.3f}"


def _cell(ci: MeanCI | None, bounded: bool = True) -> str:
    """Mean [interval]; a ``bounded`` metric lies in [0, 1], so its interval is shown
    clipped (a loss is not)."""
    if ci is None or math.isnan(ci.mean):
        return "n/a"
    if ci.n < 2 or math.isnan(ci.low):
        return f"{ci.mean:.3f}"
    low, high = (max(ci.low, 0.0), min(ci.high, 1.0)) if bounded else (ci.low, ci.high)
    return f"{ci.mean:.3f} [{low:.3f}, {high:.3f}]"


def by_setting(groups: list[Group]) -> dict[str, list[Group]]:
    found: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        found[g.setting].append(g)
    return dict(sorted(found.items()))


def ranked(groups: list[Group]) -> list[tuple[int, Group]]:
    """Rows in order of scale and dataset, then of mean ROC-AUC (best first), each with its
    rank among the rows of its setting, scale and dataset."""
    order = sorted(groups, key=lambda g: (g.ranked_among, -nan_lowest(g.metrics["roc_auc"].mean)))
    out, previous, rank = [], None, 0
    for g in order:
        rank = rank + 1 if g.ranked_among == previous else 1
        previous = g.ranked_among
        out.append((rank, g))
    return out


def seeds_of(group: Group) -> str:
    return ",".join(str(s) for s in group.seeds)


def measured_table(groups: list[Group], shown: list[str]) -> tuple[list[str], list[list[str]]]:
    """One detection setting's rows, ranked, with the ``shown`` metrics."""
    rows = [
        [str(rank), g.scale, g.dataset, g.label, g.framework, seeds_of(g)]
        + [_cell(g.metrics.get(m), bounded=m not in UNBOUNDED) for m in shown]
        for rank, g in ranked(groups)
    ]
    return ["rank", "scale", "dataset", "model", "framework", "seeds", *shown], rows


def claims_table(groups: list[Group], claimed: dict) -> tuple[list[str], list[list[str]]]:
    """Each claimed figure against every row's measurement (its verdict)."""
    verdicts = [
        [name, f"{value:g}"]
        + [verdict(value, g.metrics[name]) if name in g.metrics else "not measured" for g in groups]
        for name, value in sorted(claimed.items())
    ]
    return ["claim", "value", *(g.name for g in groups)], verdicts


def setup_markdown(setup: Setup) -> str:
    meta = setup.meta
    claimed = meta.get("claimed") or {}
    article_metrics = list(meta.get("article_metrics") or [])
    shown = article_metrics + [m for m in ("roc_auc", "pr_auc") if m not in article_metrics]
    lines = [
        f"## Article {meta.get('article', '?')}: {meta.get('title', setup.experiment)}",
        "",
        f"`python -m benchmark -m experiment={setup.experiment}` "
        "(`scale=paper` for the article's sizes).",
        "",
        f"**Setup (as the article describes it).** {meta.get('setup', '')}",
        "",
    ]
    if claimed:
        lines.append(
            "**Claimed:** " + ", ".join(f"{k} {v:g}" for k, v in sorted(claimed.items())) + "."
        )
    else:
        lines.append("**Claimed:** no numbers (the article names its metrics only).")
    lines += [
        "",
        "Measured on the test split, training-log figures on the training split (mean "
        "over seeds, Student t 95% interval, clipped to [0, 1] except for losses; with 3 "
        "seeds the t factor is 4.3, so intervals are wide). One table per detection "
        "setting; rows ranked by ROC-AUC among the rows of the same scale and dataset. "
        "Version: *article* as written, *harness* with the project's own head and losses "
        "(baselines have none).",
    ]
    for setting, groups in by_setting(setup.groups).items():
        lines += [
            "",
            f"Setting: **{setting}**",
            "",
            render.markdown(*measured_table(groups, shown)),
        ]
    if claimed:
        lines += ["", render.markdown(*claims_table(setup.groups, claimed))]
    deviations = meta.get("deviations") or {}
    if deviations:
        lines += ["", "**Where this setup departs from the article, and why.**", ""]
        lines += [f"- {fact}: {why}" for fact, why in deviations.items()]
    lines += ["", "**What bears on the gap.**", ""]
    lines += [f"- {fact}" for fact in gap_facts(setup)]
    lines += [f"- {choice}" for choice in meta.get("open_choices") or []]
    lines += ["", "Accuracy beside calling every test sequence normal, per row:", ""]
    lines += [gap_table(setup)]
    if setup.failed:
        lines += ["", f"**Failed runs ({len(setup.failed)}):**", ""]
        lines += [failure_line(r) for r in setup.failed]
    return "\n".join(lines) + "\n"


def build(root: Path) -> str:
    records = load_records(root)
    if not records:
        raise FileNotFoundError(
            f"no {PREFIX}* experiment folders with run records under {root}: "
            "run `make reproduce` (or python -m benchmark -m experiment=paper_...) first"
        )
    setups = [summarise(name, recs) for name, recs in sorted(records.items())]
    head = [
        "# Reproducing the source articles",
        "",
        "Generated by `python -m benchmark.report.reproduction` from the run records under "
        f"`{root}` (one section per `conf/experiment/paper_*.yaml`). Claimed numbers come "
        "from the experiment configs (`reproduction.claimed`); a claim counts as reproduced "
        "only inside the measured 95% interval.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(setup_markdown(s) for s in setups)


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path("results")
    try:
        text = build(root)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = root / OUT_DIR / "reproduction.md"
    with sole_writer(out.parent):
        write_atomic(out, text)
    print(f"reproduction table: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
