"""The article reproductions: their configs (faithful sizes at scale=paper, a CPU-sized scale=ci,
metadata with every open choice) and the claimed-vs-measured table built from run records."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from benchmark.evaluation.stats import mean_ci
from benchmark.records.record import RunRecord, dumps, from_dict
from benchmark.report.articles import reproduction_deviations
from benchmark.report.reproduction import METRICS, build, majority_accuracy, summarise, verdict
from benchmark.run.experiment import as_config, run

from .conftest import CONF_DIR

PAPERS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("paper_*.yaml"))


def test_every_article_setup_has_a_config():
    assert [p.split("_")[1] for p in PAPERS] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("scale", ["ci", "paper"])
@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("paper", PAPERS)
def test_each_setup_composes_in_both_frameworks_and_scales(compose_config, paper, framework, scale):
    from benchmark.config import check_config

    config = as_config(
        compose_config([f"experiment={paper}", f"framework={framework}", f"scale={scale}"])
    )
    check_config(config)
    meta = config.reproduction
    assert meta["title"]
    assert meta["setup"]
    assert meta["article_metrics"]
    assert len(meta["open_choices"]) >= 4, "every choice the article leaves open is stated"
    assert isinstance(meta["claimed"], dict)


def deep_models(paper: str) -> list[str]:
    """The deep detectors a setup's sweep runs (none named: the experiment's own model)."""
    from benchmark.detectors.registry import BASELINES

    sweep = yaml.safe_load((CONF_DIR / "experiment" / f"{paper}.yaml").read_text())
    named = str(sweep["hydra"]["sweeper"]["params"].get("model", "")).split(",")
    return [m for m in named if m and m not in BASELINES] or [""]


def article_config(compose_config, paper: str, model: str, *overrides: str):
    """A setup at the article's sizes, as written (its default version)."""
    chosen = [f"model={model}"] if model else []
    return as_config(compose_config([f"experiment={paper}", "scale=paper", *chosen, *overrides]))


@pytest.mark.parametrize("paper", PAPERS)
def test_every_departure_from_the_article_is_listed_with_its_reason(compose_config, paper):
    """Each setup's model, loss, dropout, input, score and threshold (the facts
    benchmark/report/articles.py reads from a config) against what its article specifies:
    every difference is a key of reproduction.deviations with a reason, and every listed key
    is a difference (nothing stale)."""
    found: set[str] = set()
    for model in deep_models(paper):
        config = article_config(compose_config, paper, model)
        listed = config.reproduction["deviations"]
        differences = reproduction_deviations(config)
        unlisted = {k: v for k, v in differences.items() if k not in listed}
        assert not unlisted, f"{paper} {model}: (article, config) differ, unlisted: {unlisted}"
        found |= set(differences)
        assert all(len(str(why).split()) >= 8 for why in listed.values()), "a reason, not a word"
    assert set(listed) <= found, f"{paper}: listed but not different: {set(listed) - found}"


@pytest.mark.parametrize(
    ("paper", "change", "fact"),
    [
        ("paper_2_lstm_classifier", "model.dropout=0.3", "dropout"),
        ("paper_2_lstm_classifier", "model.head=pooled_max", "head"),
        ("paper_1_model_selection", "dataset.sequence.max_length=5", "max_length"),
        ("paper_5_multimodal_fusion", "model.fusion=late", "fusion"),
        ("paper_3_lstm_forecast", "objective.pool=mean", "threshold_on"),
        ("paper_3_lstm_forecast", "model.lag_window=0", "input"),
        ("paper_4_pretrained_transformer_pca", "model.event_head=true", "event_head"),
        ("paper_2_lstm_classifier", "anomaly.params.price_outlier.p_up=0.8", "anomaly"),
    ],
)
def test_an_unlisted_departure_is_caught(compose_config, paper, change, fact):
    """The check above, broken on purpose: one setting moved away from the article."""
    config = article_config(compose_config, paper, deep_models(paper)[0], change)
    assert fact in reproduction_deviations(config)
    assert fact not in config.reproduction["deviations"]


def test_the_harness_version_differs_from_the_article_in_head_and_losses_only(compose_config):
    paper = "paper_2_lstm_classifier"
    article = article_config(compose_config, paper, "")
    harness = article_config(compose_config, paper, "", "reproduction.variant=harness")
    assert (article.model.head, article.model.event_head) == ("pooled", False)
    assert (harness.model.head, harness.model.event_head) == ("pooled_max", True)
    assert replace(harness.model, head=article.model.head, event_head=False) == article.model
    three = article_config(compose_config, "paper_3_lstm_forecast", "lstm")
    assert (three.model.lag_window, three.objective.pool) == (5, "max")


def sizes(compose_config, *overrides):
    return as_config(compose_config(["scale=paper", *overrides]))


def test_paper_scale_uses_the_articles_numbers(compose_config):
    one = sizes(compose_config, "experiment=paper_1_model_selection", "model=transformer")
    assert (one.model.embed_dim, one.model.hidden_dim, one.model.ff_dim) == (512, 512, 2048)
    assert (one.model.num_layers, one.dataset.sequence.max_items) == (2, 10000)
    rnn = sizes(compose_config, "experiment=paper_1_model_selection", "model=gru")
    assert (rnn.model.embed_dim, rnn.model.hidden_dim, rnn.model.num_layers) == (100, 128, 2)
    assert (rnn.train.epochs, rnn.train.batch_size, rnn.dataset.sequence.max_length) == (10, 32, 3)
    two = sizes(compose_config, "experiment=paper_2_lstm_classifier")
    assert (two.model.hidden_dim, two.model.num_layers) == (50, 1)
    assert (two.train.epochs, two.train.batch_size, two.train.lr) == (100, 1, 1e-3)
    assert two.anomaly.mix["price_outlier"] == 1.0
    assert sum(two.anomaly.mix.values()) == 1.0
    three = sizes(compose_config, "experiment=paper_3_lstm_forecast")
    assert (three.objective.name.value, three.train.epochs) == ("forecast", 10)
    assert three.evaluation.threshold == "balanced"
    four = sizes(compose_config, "experiment=paper_4_pretrained_transformer_pca")
    assert (four.model.num_layers, four.model.share_layers, four.model.hidden_dim) == (3, True, 768)
    assert (four.train.lr, four.train.batch_size, four.train.epochs) == (2e-5, 16, 5)
    assert four.dataset.sequence.max_length == 128
    assert (four.pca.components, four.train.pretrain_epochs) == (64, 10)
    assert four.reproduction["claimed"] == {"accuracy": 0.98, "recall": 0.95, "f1": 0.97}
    five = sizes(compose_config, "experiment=paper_5_multimodal_fusion")
    assert (five.model.name.value, five.objective.name.value) == ("multimodal", "classify_type")
    assert (five.train.epochs, five.train.batch_size, five.train.weight_decay) == (10, 32, 0.0)
    assert five.model.standardize_inputs
    m = five.model
    assert (m.fusion.value, m.text_dim, m.hidden_dim, five.dataset.generator.image_dim) == (
        "early",
        100,
        512,
        512,
    )
    assert five.reproduction["claimed"]["train_loss_first_epoch"] == 2.3026


def test_scale_ci_is_smaller_and_a_command_line_value_still_wins(compose_config):
    ci = as_config(compose_config(["experiment=paper_2_lstm_classifier"]))
    assert (ci.train.epochs, ci.train.batch_size) == (10, 32)
    mine = as_config(compose_config(["experiment=paper_2_lstm_classifier", "train.epochs=3"]))
    assert mine.train.epochs == 3


# --- the table --------------------------------------------------------------------------


def record(
    seed: int,
    accuracy: float,
    recall: float,
    model: str = "lstm",
    roc_auc: float = 0.8,
    **extra,
) -> RunRecord:
    metrics = dict(accuracy=accuracy, precision=0.5, recall=recall, f1=0.6, roc_auc=roc_auc)
    metrics.update(pr_auc=0.4, n_test=200, n_test_anomalies=20)
    metrics["alternative_roc_auc"] = {"objective_score": 0.7}
    return from_dict(
        {
            "run_id": f"r{seed}{model}",
            "status": "ok",
            "dataset": "synthetic",
            "model": model,
            "framework": "torch",
            "setting": "supervised",
            "seed": seed,
            "metrics": metrics,
            "data": {"splits": {"train": {"contamination": 0.05}}},
            "config": {
                "scale": "ci",
                "evaluation": {"threshold": "fixed", "fixed_threshold": 0.0},
                "reproduction": {
                    "article": 9,
                    "title": "A test article",
                    "setup": "as described",
                    "article_metrics": ["accuracy", "recall"],
                    "claimed": {"accuracy": 0.9, "recall": 0.95},
                    "open_choices": ["data: not named"],
                    "variant": "article",
                    "deviations": {"loss": "the worked example's loss"},
                },
            },
            **extra,
        }
    )


def write_records(root: Path, records: list[RunRecord]) -> None:
    for r in records:
        folder = root / "paper_9_test" / r.run_id
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(dumps(r))


def test_the_table_shows_the_records_means_and_judges_claims_by_the_interval(tmp_path):
    accuracies, recalls = [0.88, 0.90, 0.92], [0.40, 0.42, 0.44]
    write_records(
        tmp_path, [record(s, a, r) for s, a, r in zip(range(3), accuracies, recalls, strict=True)]
    )
    failed = replace(record(3, 0, 0), status="failed", failed_phase="train", error="E: x")
    write_records(tmp_path, [failed])
    text = build(tmp_path)
    acc, rec = mean_ci(accuracies), mean_ci(recalls)
    assert (
        f"| 1 | ci | synthetic | lstm (article) | torch | 0,1,2 | "
        f"{acc.mean:.3f} [{acc.low:.3f}, {acc.high:.3f}]" in text
    )
    assert f"{rec.mean:.3f} [{rec.low:.3f}, {rec.high:.3f}]" in text
    assert "| accuracy | 0.9 | reproduced (inside the 95% interval) |" in text
    assert (
        f"| recall | 0.95 | not reproduced: measured {rec.mean - 0.95:+.3f} from the claim |"
        in text
    )
    table_row = "| supervised / ci / synthetic / lstm (article) / torch | "
    assert f"{table_row}{acc.mean:.3f} | 0.900 | 0.800 | 0.700 |" in text
    assert "| row | accuracy | all normal | roc_auc | roc_auc (objective_score) |" in text
    assert "- data: not named" in text
    assert "seed 3: train phase, E: x" in text


def test_training_log_claims_are_judged_on_the_records_first_and_last_epochs(tmp_path):
    """An article that claims its training log (setup 5): the first and last epochs of each
    run's history, averaged over seeds; losses are not clipped to [0, 1]."""
    last_accuracies = [0.60, 0.62, 0.64]
    runs = []
    for seed, last in enumerate(last_accuracies):
        history = [
            {"epoch": 1, "train_loss": 2.30 + seed / 100, "train_accuracy": 0.37},
            {"epoch": 2, "train_loss": 2.15, "train_accuracy": last},
        ]
        runs.append(record(seed, 0.9, 0.5, training={"history": history}))
        claimed = runs[-1].config["reproduction"]
        claimed["article_metrics"] = ["train_loss_first_epoch", "train_accuracy_last_epoch"]
        claimed["claimed"] = {"train_accuracy_last_epoch": 0.6356, "train_loss_first_epoch": 1.0}
    write_records(tmp_path, runs)
    text = build(tmp_path)
    acc, loss = mean_ci(last_accuracies), mean_ci([2.30, 2.31, 2.32])
    assert f"| {loss.mean:.3f} [{loss.low:.3f}, {loss.high:.3f}] |" in text  # above 1: unclipped
    assert "| train_accuracy_last_epoch | 0.6356 | reproduced (inside the 95% interval) |" in text
    assert (
        f"| train_loss_first_epoch | 1 | not reproduced: measured {loss.mean - 1:+.3f} "
        "from the claim |" in text
    )
    assert f"| 0.370 | {acc.mean:.3f} | {0.95:.3f} |" in text  # first, last epoch; majority
    assert acc.low <= 0.6356 <= acc.high


def test_one_seed_is_never_called_reproduced():
    assert verdict(0.9, mean_ci([0.9])).startswith("not comparable")


def test_majority_accuracy_is_the_share_of_normal_test_sequences():
    assert majority_accuracy(record(0, 0.5, 0.5)) == pytest.approx(0.9)


@pytest.mark.slow  # a real sweep of a setup
def test_a_real_run_lands_in_the_table_with_its_own_numbers(compose_config, tmp_path):
    common = ["experiment=paper_2_lstm_classifier", "framework=torch", f"results_dir={tmp_path}"]
    small = ["dataset.generator.n_users=1000", "train.epochs=1"]
    runs = [run(compose_config([*common, *small, f"seed={s}"])).record for s in (0, 1)]
    setup = summarise("paper_2_lstm_classifier", runs)
    (group,) = setup.groups
    assert group.metrics["f1"].mean == pytest.approx(sum(r.result.f1 for r in runs) / 2)
    assert setup.threshold == "fixed"
    text = build(tmp_path)
    assert "## Article 2: LSTM sequence classifier (price outliers)" in text
    assert "**Claimed:** no numbers" in text


def test_two_scales_of_a_setup_never_pool_as_seeds():
    """scale is a noise key, but the values it selects differ: two rows, named by them."""
    runs = []
    for scale, epochs in (("ci", 10), ("paper", 100)):
        for seed in (0, 1):
            runs.append(
                from_dict(
                    {
                        "run_id": f"{scale}-{seed}",
                        "status": "ok",
                        "dataset": "synthetic",
                        "model": "lstm",
                        "framework": "torch",
                        "seed": seed,
                        "config": {
                            "scale": scale,
                            "seed": seed,
                            "train": {"epochs": epochs},
                            "evaluation": {"threshold": "fixed"},
                        },
                        "metrics": {
                            **dict.fromkeys(METRICS, 0.5),
                            "n_test": 10,
                            "n_test_anomalies": 1,
                        },
                        "data": {"splits": {"train": {"contamination": 0.1}}},
                    }
                )
            )
    setup = summarise("paper_2_lstm_classifier", [*runs, replace(runs[0], run_id="again")])
    assert [(g.scale, g.label) for g in setup.groups] == [("ci", "lstm"), ("paper", "lstm")]
    assert [g.seeds for g in setup.groups] == [(0, 1), (0, 1)]


def test_settings_get_tables_of_their_own_and_the_deviations_are_listed(tmp_path):
    """A comparator of another detection setting is ranked in its own table, never against
    the supervised rows; within a table the rows are ranked by ROC-AUC; every deviation the
    config lists is shown with its reason."""
    runs = [record(s, 0.9, 0.5, roc_auc=0.7 + s / 100) for s in range(2)]
    runs += [record(s, 0.9, 0.5, "random_forest", roc_auc=0.9, framework="numpy") for s in range(2)]
    runs += [
        record(s, 0.9, 0.5, "knn", roc_auc=0.99, setting="semi_supervised", framework="numpy")
        for s in range(2)
    ]
    write_records(tmp_path, runs)
    text = build(tmp_path)
    supervised = text.index("Setting: **supervised**")
    semi = text.index("Setting: **semi_supervised**")
    assert semi < supervised  # alphabetical
    assert "| 1 | ci | synthetic | knn | numpy |" in text[semi:supervised]
    assert "| 1 | ci | synthetic | random_forest | numpy |" in text[supervised:]
    assert "| 2 | ci | synthetic | lstm (article) | torch |" in text[supervised:]
    assert "knn" not in text[supervised : text.index("| claim |")]
    assert "- loss: the worked example's loss" in text
