"""The detector stage of a run: build, fit, score, threshold on validation, evaluate on test."""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from benchmark.config import ObjectiveName
from benchmark.detectors.adapters.common import CheckpointError, load_checkpoint
from benchmark.detectors.pca import PCAModel, fit_pca, pca_scores
from benchmark.detectors.registry import (
    ADAPTERS,
    BASELINES,
    SEMI_SUPERVISED,
    SUPERVISED,
    DataInfo,
    DetectorSpec,
    NeuralDetector,
    Scores,
    as_neural,
    create,
    framework_of,
    speed_probe,
)
from benchmark.errors import ConfigError, EvaluationError
from benchmark.evaluation.metrics import ScoredSplit, evaluate, fit_threshold, roc_auc
from benchmark.records.atomic import atomic_path
from benchmark.records.record import Metrics, OomRetry, RunRecord, Timing
from benchmark.records.store import SCORES_FILE
from benchmark.run.data import PreparedData
from benchmark.run.explain import write_explanations
from benchmark.timing.protocol import Plan, TimingProtocol, current_rss_mb, measure
from datasets.features import (
    N_DEVICES,
    N_EVENT_TYPES,
    N_GAP_BUCKETS,
    N_PRICE_BUCKETS,
    UNKNOWN,
    SequenceArrays,
)

log = logging.getLogger("benchmark")


def data_info(prepared: PreparedData, max_length: int) -> DataInfo:
    price_mean, price_std = log_price_moments(prepared.arrays["train"])
    return DataInfo(
        max_length=max_length,
        n_items=len(prepared.vocabs.item),
        n_categories=len(prepared.vocabs.category),
        n_event_types=N_EVENT_TYPES,
        n_gap_buckets=N_GAP_BUCKETS,
        n_price_buckets=N_PRICE_BUCKETS,
        n_devices=N_DEVICES,
        modalities=prepared.modalities,
        profile_cardinalities=prepared.profile_cardinalities,
        n_brands=len(prepared.vocabs.brand) if prepared.vocabs.brand is not None else 0,
        n_anomaly_types=len(prepared.labelled["train"].type_names),
        price_mean=price_mean,
        price_std=price_std,
        **media_sizes(prepared.arrays["train"]),
    )


def media_sizes(train: SequenceArrays) -> dict[str, int]:
    """The query-word vocabulary (word ids + 1; 0: no queries) and the image width (0: no
    images) of the data's shared media tables."""
    media = train.media
    words = media.query_tokens if media is not None else None
    images = media.item_image if media is not None else None
    n_words = int(words.max()) + 1 if words is not None and words.size else 0
    return {
        "n_words": n_words if n_words > 1 else 0,
        "image_dim": int(images.shape[1]) if images is not None else 0,
    }


def log_price_moments(train: SequenceArrays) -> tuple[float, float]:
    """Mean and standard deviation of log1p(price) over the training split's priced events
    (the z-score of the price input; (0, 1), the identity, when nothing has a price)."""
    priced = train.log_price[train.mask & (train.price_bucket != UNKNOWN)]
    if priced.size < 2 or float(priced.std()) == 0.0:
        return 0.0, 1.0
    return float(priced.mean()), float(priced.std())


def detect(
    config,
    prepared: PreparedData,
    run_dir: Path,
    record: RunRecord,
    phase: Callable[[str], None] = lambda _: None,
    on_epoch: Callable[[dict], None] | None = None,
):
    """Fill ``record`` with the detector's training report and metrics; returns the fitted
    detector (for the timing phase). ``phase`` is told each stage (build, train, score,
    evaluate) so that a failure names where it happened."""
    model, framework = config.model.name.value, config.framework.name.value
    record.framework = framework_of(model, framework)
    spec = detector_spec(config, prepared, run_dir, record.threads, on_epoch)
    setting = config.setting.value
    check_evaluable(prepared, setting)
    phase("build")
    importlib.import_module(ADAPTERS[record.framework])  # before the baseline
    record.rss_before_detector_mb = current_rss_mb()
    detector = create(model, framework, spec)
    train = training_view(prepared.arrays["train"], setting)
    record.training_sequences = len(train)
    phase("train")
    detector, train_seconds = train_or_load(detector, spec, train, prepared, config, record)
    phase("score")
    val_scores, test_scores, infer_seconds = score_splits(detector, train, prepared, config, record)
    phase("evaluate")
    record.metrics = evaluate_on_test(config, prepared, val_scores, test_scores)
    record.n_params = detector.n_params
    record.modalities_used = list(detector.modalities_used)
    # no training rate where nothing was trained: weights from a checkpoint, or a detector
    # without parameters (the random baseline), whose "rate" would be a meaningless 1e9
    trained = not config.checkpoint and bool(detector.n_params)
    epochs = max(1, record.epochs_trained()) if trained else 0
    record.timing = stage_timing(
        len(train) * epochs, train_seconds, len(prepared.arrays["test"]), infer_seconds
    )
    save_scores(run_dir / SCORES_FILE, prepared, val_scores, test_scores)
    if isinstance(detector, NeuralDetector):
        write_explanations(run_dir, detector, prepared, test_scores)
    return detector


def detector_spec(
    config,
    prepared: PreparedData,
    run_dir: Path,
    threads: int,
    on_epoch: Callable[[dict], None] | None,
) -> DetectorSpec:
    """What the registry builds a detector from: the config's model, objective, training
    and framework sections and the sizes of the prepared data."""
    return DetectorSpec(
        model=config.model,
        objective=config.objective,
        train=config.train,
        framework=config.framework,
        data=data_info(prepared, config.dataset.sequence.max_length),
        seed=config.seed,
        run_dir=run_dir,
        threads=threads,
        on_epoch=on_epoch,
    )


def stage_timing(
    trained_sequences: int, train_seconds: float, test_sequences: int, infer_seconds: float
) -> Timing:
    """Wall times of training and test scoring, and their rates (no training rate where
    nothing was trained)."""
    return Timing(
        train_seconds=train_seconds,
        train_seq_per_s=trained_sequences / max(train_seconds, 1e-9) if trained_sequences else None,
        infer_seconds=infer_seconds,
        infer_seq_per_s=test_sequences / max(infer_seconds, 1e-9),
    )


def train_or_load(
    detector, spec: DetectorSpec, train, prepared: PreparedData, config, record: RunRecord
):
    """(the fitted detector, seconds): trained on ``train``, or given the weights of
    ``config.checkpoint``; the training report goes into ``record``."""
    start = time.perf_counter()
    if config.checkpoint:
        record.training = load_weights(detector, config.checkpoint, spec.model.name.value, config)
    else:
        val = prepared.arrays["val"]
        detector, record.training = fit_or_halve(detector, spec, train, val, record)
    return detector, time.perf_counter() - start


def score_splits(
    detector, train, prepared: PreparedData, config, record: RunRecord
) -> tuple[Scores, Scores, float]:
    """Validation and test scores (with the representation-PCA score when
    ``pca.components`` asks for it) and the seconds the test scoring took."""
    val, test = prepared.arrays["val"], prepared.arrays["test"]
    val_scores = detector.score(val)
    start = time.perf_counter()
    test_scores = detector.score(test)
    infer_seconds = time.perf_counter() - start
    if config.pca.components:
        neural = as_neural(detector, "pca.components")
        pca, record.pca = fit_representation_pca(neural, train, config)
        val_scores = with_pca_scores(val_scores, pca, neural.represent(val), config.pca)
        start = time.perf_counter()
        test_scores = with_pca_scores(test_scores, pca, neural.represent(test), config.pca)
        infer_seconds += time.perf_counter() - start
    return val_scores, test_scores, infer_seconds


def evaluate_on_test(
    config, prepared: PreparedData, val_scores: Scores, test_scores: Scores
) -> Metrics:
    """Test metrics at the threshold fitted on the validation population's scores."""
    ev = config.evaluation
    val, test = prepared.arrays["val"], prepared.arrays["test"]
    val_in = population(prepared, "val")
    threshold = fit_threshold(
        val.label[val_in],
        val_scores.sequence[val_in],
        ev.threshold,
        ev.target_fpr,
        ev.fixed_threshold,
    )
    lab = prepared.labelled["test"]
    scored = ScoredSplit(
        test.label,
        test_scores.sequence,
        lab.anomaly_type,
        lab.eligible,
        test.event_label,
        test_scores.event,
        test.mask,
    )
    metrics = evaluate(
        scored,
        population=population(prepared, "test"),
        threshold=threshold,
        type_names=lab.type_names,
        n_boot=ev.bootstrap,
        seed=config.seed,
    )
    alternatives: dict[str, float | None] = {
        name: roc_auc(test.label, values) for name, values in test_scores.alternatives.items()
    }
    return Metrics(**metrics, alternative_roc_auc=alternatives)


# Fewer anomalous or normal sequences than this in the validation or test population and a
# ROC-AUC, a fitted threshold or an interval means nothing: the run fails before training.
MIN_PER_CLASS = 5


def population(prepared: PreparedData, split: str) -> np.ndarray:
    """(N,) bool: the split's reference population (sequences that could host a type of the
    mix; every sequence under real labels)."""
    lab = prepared.labelled[split]
    return lab.population if lab.population is not None else np.ones(len(lab.label), bool)


def training_view(train: SequenceArrays, setting: str) -> SequenceArrays:
    """What training may see: every sequence with its labels (supervised), the normal ones
    only (semi-supervised), or every sequence with its labels erased (unsupervised, so no
    detector can use them even by mistake)."""
    if setting == SUPERVISED:
        return train
    if setting == SEMI_SUPERVISED:
        return train.take(np.flatnonzero(~train.label))
    return train.without_labels()


def check_evaluable(prepared: PreparedData, setting: str = SUPERVISED) -> None:
    """Fail with the fix when validation or test cannot be evaluated, or when supervised
    training has no anomalies to learn from."""
    if setting == SUPERVISED:
        n_train = int(prepared.labelled["train"].label.sum())
        if n_train < MIN_PER_CLASS:
            raise EvaluationError(
                f"supervised training needs at least {MIN_PER_CLASS} anomalous training "
                f"sequences but has {n_train}: raise anomaly.contamination.train or use "
                "setting=unsupervised or setting=semi_supervised"
            )
    for split in ("val", "test"):
        labels = prepared.labelled[split].label[population(prepared, split)]
        anomalous, normal = int(labels.sum()), int((~labels).sum())
        if min(anomalous, normal) < MIN_PER_CLASS:
            more = (
                ""
                if prepared.summary.get("real_labels")
                else f"raise anomaly.contamination.{split} (anomaly=none injects nothing), "
            )
            raise EvaluationError(
                f"the {split} split has {anomalous} anomalous and {normal} normal sequences; "
                f"evaluating needs at least {MIN_PER_CLASS} of each: {more}use more data (a "
                f"larger file or dataset.max_rows) or a larger dataset.split.{split} share"
            )


def fit_representation_pca(
    detector: NeuralDetector, train: SequenceArrays, config
) -> tuple[PCAModel, dict]:
    """PCA of the trained detector's pooled sequence representations, fitted on the training
    split as the detection setting shows it (``training_view``) and on its normal-labelled
    rows: supervised, the labels were used already; unsupervised, they are erased, so every
    row; semi-supervised, every row is normal."""
    rows = np.flatnonzero(~train.label)
    pca = fit_pca(detector.represent(train)[rows], config.pca.components)
    summary = {
        "components": pca.k,
        "statistic": config.pca.statistic,
        "fit_on": "normal training sequences"
        if train.label.any()
        else "all training sequences (labels unused)",
        "n_fit": len(rows),
        "explained_variance_ratio": pca.explained_variance_ratio,
    }
    return pca, summary


def with_pca_scores(scores: Scores, pca: PCAModel, representations, cfg) -> Scores:
    """The chosen PCA statistic as the sequence score; the other one and the objective's own
    score stay beside it as alternatives (event scores are the objective's)."""
    statistics = pca_scores(pca, representations)
    alternatives = {
        **scores.alternatives,
        "objective_score": scores.sequence,
        **{f"pca_{name}": v for name, v in statistics.items() if name != cfg.statistic},
    }
    return Scores(statistics[cfg.statistic], scores.event, alternatives)


def train_detector(detector, spec: DetectorSpec, train, val) -> dict:
    """``detector.fit``, after masked-event pretraining of its encoder when
    ``train.pretrain_epochs`` asks for it (the report then has ``pretraining``)."""
    if spec.train.pretrain_epochs == 0:
        return detector.fit(train, val)
    encoder, pretraining = pretrain_encoder(spec, train, val)
    detector.load_weights({**detector.canonical_weights(), **encoder})
    return {**detector.fit(train, val), "pretraining": pretraining}


HEADS = "heads."  # canonical names of the objective's output layers start with this


def pretrain_encoder(spec: DetectorSpec, train, val) -> tuple[dict[str, np.ndarray], dict]:
    """Train the same architecture under the masked-event objective (labels unused) for
    ``train.pretrain_epochs`` at ``train.pretrain_lr``; returns every weight but the output
    heads (framework-neutral canonical arrays) and the pretraining report."""
    t = spec.train
    pre_spec = replace(
        spec,
        objective=replace(spec.objective, name=ObjectiveName.masked),
        train=replace(t, epochs=t.pretrain_epochs, lr=t.pretrain_lr, pretrain_epochs=0),
        run_dir=None,  # no checkpoint of the pretraining model
        on_epoch=None,  # the tracker's epochs are the objective's
    )
    model, framework = spec.model.name.value, spec.framework.name.value
    pretrained = create(model, framework, pre_spec)
    report = pretrained.fit(train, val)
    weights = as_neural(pretrained, "train.pretrain_epochs").canonical_weights()
    return {k: v for k, v in weights.items() if not k.startswith(HEADS)}, report


def fit_or_halve(detector, spec: DetectorSpec, train, val, record: RunRecord):
    """``train_detector``; on a device out-of-memory (and ``train.oom_retry``), once more with
    a fresh detector at half the batch size, noted in ``record.oom_retry``."""
    try:
        return detector, train_detector(detector, spec, train, val)
    except Exception as err:
        if not (spec.train.oom_retry and is_out_of_memory(err)):
            raise
        message = " ".join(str(err).split())[:300]
    half = max(1, spec.train.batch_size // 2)
    record.oom_retry = OomRetry(message, spec.train.batch_size, half)
    log.warning("out of memory at batch size %d; retrying once at %d", spec.train.batch_size, half)
    del detector
    release_device_memory(spec.framework.name.value)
    spec = replace(spec, train=replace(spec.train, batch_size=half))
    detector = create(spec.model.name.value, spec.framework.name.value, spec)
    return detector, train_detector(detector, spec, train, val)


OOM_MARKERS = ("out of memory", "RESOURCE_EXHAUSTED", "OutOfMemory")


def is_out_of_memory(err: BaseException) -> bool:
    """A device (or host) allocation failure, recognised by type and message so that no
    framework is imported here: torch's ``OutOfMemoryError``, XLA's ``RESOURCE_EXHAUSTED``."""
    if isinstance(err, MemoryError):
        return True
    text = f"{type(err).__name__}: {err}"
    return any(marker in text for marker in OOM_MARKERS)


def release_device_memory(framework: str) -> None:
    """Drop the failed attempt's buffers before the retry (the adapter's own hook, if any)."""
    gc.collect()
    adapter = sys.modules.get(ADAPTERS.get(framework, ""))
    release = getattr(adapter, "release_memory", None)
    if release is not None:
        release()


def timing_plan(
    config, train_batch_size: int | None = None, rss_before_mb: float | None = None
) -> Plan:
    t = config.timing
    protocol = TimingProtocol(
        warmup=t.warmup_steps,
        min_window_s=t.min_window_s,
        windows=t.windows,
        latency_requests=t.latency_requests,
    )
    return Plan(
        protocol=protocol,
        batch_sizes=tuple(t.batch_sizes),
        latency_batch_sizes=tuple(t.latency_batch_sizes),
        train_batch_size=(train_batch_size or config.train.batch_size) if t.train else None,
        rss_before_mb=rss_before_mb,
    )


def time_detector(
    detector,
    data: SequenceArrays,
    config,
    train_batch_size: int | None = None,
    rss_before_mb: float | None = None,
) -> dict:
    """The timing protocol on ``data`` (the test split) after the metrics are recorded; the
    training steps it times leave the weights as they were (at ``train_batch_size`` when an
    out-of-memory retry halved it)."""
    framework = framework_of(config.model.name.value, config.framework.name.value)
    return measure(
        speed_probe(detector, data, framework), timing_plan(config, train_batch_size, rss_before_mb)
    )


def load_weights(detector, path: str, model: str, config) -> dict:
    """Put a checkpoint's weights into ``detector`` instead of training it."""
    if model in BASELINES:
        raise ConfigError(f"checkpoint= applies to the deep detectors, not the baseline {model}")
    weights, metadata = load_checkpoint(Path(path), model, config.objective.name.value)
    try:
        detector.load_weights(weights)
    except (ValueError, RuntimeError) as error:  # JAX and torch report a misfit differently
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({str(error).splitlines()[0]}): "
            "use the model.* sizes it was trained with"
        ) from error
    return {"epochs": 0, "loaded_from": str(path), "trained_by": metadata.get("framework")}


def save_scores(path: Path, prepared: PreparedData, val: Scores, test: Scores) -> None:
    """Test (and validation) scores beside labels, types and severities, for later checks."""
    lab, arr = prepared.labelled["test"], prepared.arrays["test"]
    arrays = {
        "test_score": test.sequence,
        "test_label": arr.label,
        "test_type": lab.anomaly_type,
        "test_severity": lab.severity,
        "test_session_id": arr.session_id,
        "val_score": val.sequence,
        "val_label": prepared.arrays["val"].label,
        "type_names": np.array(lab.type_names),
        # The reference populations of the metrics (see benchmark.evaluation.metrics.evaluate).
        "test_population": population(prepared, "test"),
        "val_population": population(prepared, "val"),
    }
    if lab.eligible is not None:
        arrays["test_eligible"] = lab.eligible
    if test.event is not None:
        arrays.update(
            test_event_score=test.event, test_event_label=arr.event_label, test_mask=arr.mask
        )
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **cast(dict[str, Any], arrays))  # the stub reads ** as a flag
