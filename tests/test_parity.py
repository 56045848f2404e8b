"""PyTorch vs JAX parity: with the same weights the two implementations compute the same
function, the same loss and gradients, and the same optimiser step.

Every detector x objective (the type classifier on two of them), on a batch of real
(synthetic) sequences of mixed lengths with injected anomalies. Weights are PyTorch's init
plus noise, so every bias and every padding row is non-zero. float32 on the CPU; dropout 0 so
the training graph is deterministic.
Tolerances (from the issue): outputs and scores 1e-5 absolute (1e-4 relative where large),
loss and gradients 1e-4, parameters after one AdamW step 1e-5.
"""

from dataclasses import replace

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from benchmark.config import Pool
from benchmark.detectors.adapters.common import numpy_batch
from benchmark.detectors.adapters.jax_adapter import JaxDetector
from benchmark.detectors.adapters.torch_adapter import TorchDetector, to_batch
from benchmark.run.data import prepare_data
from models_common.config import MODALITIES, Fusion, Head
from models_jax.convert import key_map, load_canonical, to_canonical

from .conftest import compose_typed, detector_spec

MODELS = ("lstm", "gru", "transformer", "multimodal")
OBJECTIVES = ("classify", "next_event", "masked", "forecast")
# The type classifier differs from `classify` in its head and loss only: two models cover it.
PAIRS = [(m, o) for m in MODELS for o in OBJECTIVES] + [
    ("multimodal", "classify_type"),
    ("lstm", "classify_type"),
]
OUTPUT_TOL = {"atol": 1e-5, "rtol": 1e-4}
GRAD_TOL = {"atol": 1e-4, "rtol": 1e-4}
BATCH_ROWS = 12


@pytest.fixture(scope="module")
def world():
    config = compose_typed(
        [
            "experiment=smoke",
            "model.num_layers=2",
            "model.dropout=0",
            "train.batch_size=16",
            "train.lr=1e-3",
            "train.warmup=0",
            "model.standardize_inputs=true",  # the multimodal price input z-scored
        ]
    )
    prepared = prepare_data(config.dataset, config.anomaly, 0)
    test = prepared.arrays["test"]
    # Anomalous and normal rows of different lengths, so padding is exercised.
    rows = np.concatenate([np.flatnonzero(test.label == 1)[:4], np.flatnonzero(test.label == 0)])
    index = rows[:BATCH_ROWS]
    assert len(set(test.length[index])) > 3
    return config, prepared, index


def twins(
    world, model: str, objective: str, pool: Pool = Pool.mean, **model_fields
) -> tuple[TorchDetector, JaxDetector]:
    config, prepared, _ = world
    spec = detector_spec(config, prepared, model, objective, device="cpu")
    spec = replace(
        spec,
        model=replace(spec.model, **model_fields),
        objective=replace(spec.objective, pool=pool),
    )
    torch_detector = TorchDetector(spec)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in torch_detector.model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    jax_detector = JaxDetector(replace(spec, framework=replace(spec.framework, name="jax")))
    jax_detector.load_weights(torch_detector.canonical_weights())
    return torch_detector, jax_detector


def batches(world, objective: str) -> tuple[dict, dict]:
    """The same batch for both; the masked objective gets a fixed mask ``hide``."""
    _, prepared, index = world
    test = prepared.arrays["test"]
    torch_batch = to_batch(test, index, torch.device("cpu"), media=True)
    jax_batch = numpy_batch(test, index, media=True)
    assert {"query_tokens", "item_image"} <= set(jax_batch)  # the multimodal inputs, all five
    if objective == "masked":
        hide = jax_batch["mask"] & (np.random.default_rng(2).random(jax_batch["mask"].shape) < 0.3)
        torch_batch["hide"], jax_batch["hide"] = torch.as_tensor(hide), hide
    jax_batch = {
        k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in jax_batch.items()
    }
    return torch_batch, jax.device_put(jax_batch)


def jax_model(detector: JaxDetector):
    return nnx.merge(detector.eval_graph, detector.params, detector.rest)


def same_outputs(torch_detector, jax_detector, torch_batch: dict, jax_batch: dict) -> dict:
    """Both models' outputs on the same batch (eval mode; ``hide`` when the batch has one),
    every one alike within OUTPUT_TOL; the JAX outputs."""
    torch_detector.model.eval()
    with torch.no_grad():
        expected = torch_detector.model(torch_batch, torch_batch.get("hide"))
    got = jax_model(jax_detector)(jax_batch, jax_batch.get("hide"))
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[name]), value.numpy(), **OUTPUT_TOL, err_msg=name)
    return got


CASES = pytest.mark.parametrize(("model", "objective"), PAIRS)


@CASES
def test_parity_key_map_outputs_states_and_carries(world, model, objective):
    """The key map covers every weight both ways, and with the same weights the two models
    give the same outputs, states and carries."""
    torch_detector, jax_detector = twins(world, model, objective)
    weights = torch_detector.canonical_weights()
    assert set(key_map(jax_model(jax_detector))) == set(weights)
    back = jax_detector.canonical_weights()
    for name, value in weights.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    got = same_outputs(torch_detector, jax_detector, *batches(world, objective))
    if model in ("lstm", "gru"):
        assert "final_hidden" in got
        assert (model == "gru") == ("final_cell" not in got)


# Scores, losses, gradients and the optimiser step: in the fast tier a covering set of pairs,
# every model and every objective at least once (the LSTM, the reference recurrent model, under
# all five); all eighteen pairs with -m slow. Outputs and carries of all eighteen in the fast tier.
COVERING = {
    ("lstm", "classify"),
    ("lstm", "next_event"),
    ("lstm", "masked"),
    ("lstm", "forecast"),
    ("lstm", "classify_type"),
    ("gru", "next_event"),
    ("transformer", "masked"),
    ("multimodal", "classify"),
}


def fast_on(fast: set[tuple[str, str]]):
    """Every pair; those outside ``fast`` with -m slow only."""
    return pytest.mark.parametrize(
        ("model", "objective"),
        [pytest.param(m, o, marks=() if (m, o) in fast else pytest.mark.slow) for m, o in PAIRS],
    )


FAST_CASES = fast_on(COVERING)
# The optimiser step is the same AdamW whatever the model: one pair in the fast tier.
STEP_CASES = fast_on({("lstm", "classify")})


@FAST_CASES
def test_parity_sequence_and_event_scores(world, model, objective):
    torch_detector, jax_detector = twins(world, model, objective)
    _, prepared, index = world
    test = prepared.arrays["test"].take(index)  # one batch: one compiled width
    expected, got = torch_detector.score(test), jax_detector.score(test)
    assert np.ptp(expected.sequence) > 1e-2  # scores that differ: a real comparison
    np.testing.assert_allclose(got.sequence, expected.sequence, **OUTPUT_TOL)
    if expected.event is None:  # the type classifier does not localise
        assert got.event is None
        assert objective == "classify_type"
    else:
        np.testing.assert_allclose(got.event, expected.event, **OUTPUT_TOL)
    assert set(got.alternatives) == set(expected.alternatives)
    for name, value in expected.alternatives.items():
        np.testing.assert_allclose(got.alternatives[name], value, **OUTPUT_TOL, err_msg=name)


def test_parity_shared_layers_outputs_and_gradients(world):
    """ALBERT-style sharing (one block applied num_layers times): one set of block weights in
    the canonical form, the same outputs, and the shared block's gradient summed over its uses
    alike in both frameworks."""
    torch_detector, jax_detector = twins(world, "transformer", "masked", share_layers=True)
    weights = torch_detector.canonical_weights()
    assert not any(k.startswith("encoder.blocks.1.") for k in weights)
    assert set(key_map(jax_model(jax_detector))) == set(weights)
    assert_same_loss_and_gradients(torch_detector, jax_detector, *batches(world, "masked"))


@pytest.mark.parametrize("objective", ["classify", pytest.param("masked", marks=pytest.mark.slow)])
def test_parity_late_fusion_outputs_loss_and_gradients(world, objective):
    """The multimodal detector's other fusion (after the encoder) alike in both frameworks."""
    torch_detector, jax_detector = twins(world, "multimodal", objective, fusion=Fusion.late)
    assert set(key_map(jax_model(jax_detector))) == set(torch_detector.canonical_weights())
    assert jax_detector.modalities_used == MODALITIES
    torch_batch, jax_batch = batches(world, objective)
    same_outputs(torch_detector, jax_detector, torch_batch, jax_batch)
    assert_same_loss_and_gradients(torch_detector, jax_detector, torch_batch, jax_batch)


@pytest.mark.parametrize(
    ("model", "objective", "pool", "fields"),
    [
        pytest.param(  # its PyTorch side in the fast tier: tests/test_models_torch.py
            "lstm",
            "classify",
            Pool.mean,
            {"head": Head.pooled, "event_head": False},
            marks=pytest.mark.slow,
        ),
        pytest.param("gru", "forecast", Pool.max, {"lag_window": 3}),
    ],
    ids=["last-state-head", "lag-window-max-pooled"],
)
def test_parity_article_switches(world, model, objective, pool, fields):
    """The switches the article setups turn (the output layer on the last state alone and no
    event head; a lag window, the events' maximum as the score) alike in both frameworks:
    outputs, carries, scores, loss and gradients."""
    torch_detector, jax_detector = twins(world, model, objective, pool, **fields)
    weights = torch_detector.canonical_weights()
    assert set(key_map(jax_model(jax_detector))) == set(weights)
    torch_batch, jax_batch = batches(world, objective)
    got = same_outputs(torch_detector, jax_detector, torch_batch, jax_batch)
    if "event_head" in fields:  # one output, reading the last state alone
        assert "event_logit" not in got
        assert "heads.event.weight" not in weights
        assert weights["heads.sequence.weight"].shape == (1, torch_detector.spec.model.hidden_dim)
    test = world[1].arrays["test"].take(world[2])
    scores, jax_scores = torch_detector.score(test), jax_detector.score(test)
    np.testing.assert_allclose(jax_scores.sequence, scores.sequence, **OUTPUT_TOL)
    if pool == Pool.max:  # the score is the largest event score
        np.testing.assert_allclose(scores.sequence, scores.event.max(axis=1), rtol=1e-6)
    assert_same_loss_and_gradients(torch_detector, jax_detector, torch_batch, jax_batch)


def test_parity_pooled_representations_and_explanations_alike(world):
    """The pooled representations (PCA's input) and what the detector shows of its reasoning
    (the report's explanations: attention over events, modality gates) agree."""
    torch_detector, jax_detector = twins(world, "multimodal", "classify")
    test = world[1].arrays["test"]
    expected, got = torch_detector.represent(test), jax_detector.represent(test)
    assert expected.shape == (len(test), world[0].model.hidden_dim)
    np.testing.assert_allclose(got, expected, **OUTPUT_TOL)
    rows = world[2][:5]
    shown, jax_shown = torch_detector.inspect(test, rows), jax_detector.inspect(test, rows)
    assert set(shown) == set(jax_shown) == {"attention_weights", "gates", "event_gates"}
    for name, value in shown.items():
        other = jax_shown[name]
        if name != "gates":  # per event: each framework pads to its own width
            width = min(value.shape[1], other.shape[1])
            value, other = value[:, :width], other[:, :width]
        np.testing.assert_allclose(other, value, **OUTPUT_TOL, err_msg=name)


def canonical_gradients(detector: JaxDetector, batch: dict) -> tuple[float, dict]:
    def loss(params):
        return detector._loss_fn(params, detector.rest, batch, jax.random.key(0))[0]

    value, grads = jax.value_and_grad(loss)(detector.params)
    model = nnx.merge(detector.eval_graph, grads, detector.rest)
    return float(value), to_canonical(model)


@FAST_CASES
def test_parity_loss_and_gradients(world, model, objective):
    torch_detector, jax_detector = twins(world, model, objective)
    assert_same_loss_and_gradients(torch_detector, jax_detector, *batches(world, objective))


def assert_same_loss_and_gradients(torch_detector, jax_detector, torch_batch, jax_batch):
    torch_detector.model.train()  # dropout is 0: train mode is deterministic
    loss = torch_detector._loss(torch_batch, None)
    loss.backward()
    jax_detector.init_training(total_steps=10)
    jax_loss, grads = canonical_gradients(jax_detector, jax_batch)
    np.testing.assert_allclose(jax_loss, loss.item(), **GRAD_TOL)
    for name, p in torch_detector.model.named_parameters():
        expected = np.zeros(p.shape, np.float32) if p.grad is None else p.grad.numpy()
        np.testing.assert_allclose(grads[name], expected, **GRAD_TOL, err_msg=name)


@STEP_CASES
def test_parity_one_optimiser_step(world, model, objective):
    """Parameters after one AdamW step agree within 1e-5, except where both frameworks find a
    gradient that is zero up to rounding (< 1e-6): there Adam's g / (|g| + eps) turns rounding
    noise into a step of up to +-lr in either direction. The attention key bias is such a
    parameter (softmax ignores a shift shared by all keys); those steps are only checked to
    stay within lr."""
    torch_detector, jax_detector = twins(world, model, objective)
    torch_batch, jax_batch = batches(world, objective)
    before = torch_detector.canonical_weights()
    _, jax_grads = canonical_gradients(jax_detector, jax_batch)
    torch_detector.model.train()
    opt, sched = torch_detector.optimizer(total_steps=10)
    torch_detector.train_step(torch_batch, opt, sched, None)
    opt_state = jax_detector.init_training(total_steps=10)
    jax_detector.train_step(jax_batch, opt_state, jax.random.key(0))
    after = jax_detector.canonical_weights()
    # The classifiers count their right answers alike (the train_accuracy of the history).
    assert int(jax_detector.epoch_hits) == int(torch_detector.epoch_hits)
    lr = world[0].train.lr
    grads = {n: p.grad for n, p in torch_detector.model.named_parameters()}
    for name, value in torch_detector.canonical_weights().items():
        torch_grad = np.zeros(value.shape) if grads[name] is None else grads[name].numpy()
        noise = (np.abs(torch_grad) < 1e-6) & (np.abs(jax_grads[name]) < 1e-6)
        np.testing.assert_allclose(after[name][~noise], value[~noise], atol=1e-5, rtol=0)
        for moved in (after[name] - before[name], value - before[name]):
            assert np.all(np.abs(moved[noise]) <= 1.01 * lr), name


def test_parity_a_mismatched_checkpoint_is_refused(world):
    from models_jax.convert import WeightMismatchError

    torch_detector, jax_detector = twins(world, "gru", "classify")
    weights = torch_detector.canonical_weights()
    weights.pop("rnn.weight_hh_l1")
    with pytest.raises(WeightMismatchError, match="missing"):
        load_canonical(jax_model(jax_detector), weights)


@pytest.mark.parametrize(("trained_by", "scored_by"), [("torch", "jax"), ("jax", "torch")])
def test_parity_checkpoint_trained_in_one_framework_scores_the_same_in_the_other(
    compose_config, tmp_path, trained_by, scored_by
):
    from benchmark.detectors.adapters.common import CHECKPOINT
    from benchmark.run.experiment import run

    common = ["experiment=smoke", "model=gru", "objective=next_event", f"results_dir={tmp_path}"]
    trained = run(compose_config([*common, f"framework={trained_by}"]))
    checkpoint = trained.run_dir / CHECKPOINT
    scored = run(compose_config([*common, f"framework={scored_by}", f"checkpoint={checkpoint}"]))
    assert scored.status == "ok"
    assert scored.record.training["trained_by"] == trained_by
    assert scored.record.timing.train_seq_per_s is None  # weights loaded, nothing trained
    assert trained.record.timing.train_seq_per_s > 0
    expected = np.load(trained.run_dir / "scores.npz")
    got = np.load(scored.run_dir / "scores.npz")
    np.testing.assert_allclose(got["test_score"], expected["test_score"], **OUTPUT_TOL)
    np.testing.assert_allclose(got["test_event_score"], expected["test_event_score"], **OUTPUT_TOL)
    # Scores equal within OUTPUT_TOL; pairs closer than that may rank either way, so the
    # ROC-AUCs may differ by those pairs' share and no more.
    flippable = _pairs_within_tolerance(expected)
    assert scored.record.result.roc_auc == pytest.approx(
        trained.record.result.roc_auc, abs=flippable + 1e-9
    )


def _pairs_within_tolerance(scores) -> float:
    """Share of (anomalous, normal) test pairs of the reference population whose scores are
    within OUTPUT_TOL of each other."""
    keep = scores["test_population"]
    s, y = scores["test_score"][keep], scores["test_label"][keep].astype(bool)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    width = OUTPUT_TOL["atol"] + OUTPUT_TOL["rtol"] * np.abs(pos)
    near = np.searchsorted(neg, pos + 2 * width, "right") - np.searchsorted(neg, pos - 2 * width)
    return float(near.sum()) / max(len(pos) * len(neg), 1)
