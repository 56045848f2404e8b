"""The JAX adapter and Flax models beyond parity: schedule, fixed shapes, compile counts,
padding invariance, bf16, end-to-end runs."""

import jax
import numpy as np
import pytest
from flax import nnx

from benchmark.detectors.adapters.common import lr_factor, numpy_batch
from benchmark.detectors.adapters.jax_adapter import MODELS as MODEL_CLASSES
from benchmark.detectors.adapters.jax_adapter import JaxDetector, length_buckets, schedule_factor
from benchmark.errors import ConfigError
from benchmark.evaluation.metrics import roc_auc
from benchmark.run.data import prepare_data
from benchmark.run.experiment import run

from .conftest import compose_typed, detector_spec

MODELS = ("lstm", "gru", "transformer", "multimodal")


@pytest.fixture(scope="module")
def smoke():
    config = compose_typed(["experiment=smoke", "framework=jax"])
    return config, prepare_data(config.dataset, config.anomaly, 0)


def detector(smoke, model: str, objective: str = "classify") -> JaxDetector:
    config, prepared = smoke
    return JaxDetector(detector_spec(config, prepared, model, objective, device="cpu"))


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_jax_schedule_equals_the_torch_schedule(schedule):
    steps = np.arange(120)
    expected = [lr_factor(int(s), 10, 110, schedule) for s in steps]
    got = np.asarray(jax.vmap(lambda s: schedule_factor(s, 10, 110, schedule))(steps))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_length_buckets_are_powers_of_two_up_to_the_maximum():
    assert length_buckets(50) == (8, 16, 32, 50)
    assert length_buckets(64) == (8, 16, 32, 64)
    assert length_buckets(5) == (5,)


@pytest.mark.parametrize("model", MODELS)
def test_jax_scores_ignore_padding(smoke, model):
    """The shortest sequences padded to the longest width give the same outputs on their
    real events as when padded only to their own longest."""
    d = detector(smoke, model, "next_event")
    test = smoke[1].arrays["test"]
    index = np.argsort(test.length, kind="stable")[:10]
    net = nnx.merge(d.eval_graph, d.params, d.rest)
    narrow = numpy_batch(test, index, media=True)
    wide = numpy_batch(test, index, smoke[0].dataset.sequence.max_length, media=True)
    assert wide["mask"].shape[1] > narrow["mask"].shape[1] + 5
    forward = nnx.jit(lambda model, batch: model(batch))  # eagerly: one compile per op
    out_narrow, out_wide = forward(net, narrow), forward(net, wide)
    width, mask = narrow["mask"].shape[1], narrow["mask"]
    for name in ("states", "item_logits"):
        np.testing.assert_allclose(
            np.asarray(out_wide[name])[:, :width][mask],
            np.asarray(out_narrow[name])[mask],
            atol=1e-5,
            err_msg=name,
        )


def test_scoring_compiles_once_per_length_bucket(smoke):
    d = detector(smoke, "gru")
    test = smoke[1].arrays["test"]
    d.score(test)
    first = d.compiles["score"]
    d.score(test)
    assert d.compiles["score"] == first  # the second pass reuses every compiled shape
    assert 1 <= first <= len(d.buckets)


def test_bf16_scores_keep_the_ranking_and_float32_outputs(smoke):
    """The bf16 path (used on GPU) forced on the CPU: parameters cast inside the step, output
    heads in float32, so the scores stay distinct and the ROC-AUC barely moves."""
    d = detector(smoke, "transformer")
    prepared = smoke[1]
    # Trained on the sequences of the narrowest length bucket: one train-step compile.
    train, val = (prepared.arrays[s] for s in ("train", "val"))
    d.fit(train.take(np.flatnonzero(train.length <= 8)), val.take(np.flatnonzero(val.length <= 8)))
    test = prepared.arrays["test"]
    fp32 = d.score(test).sequence
    d.bf16 = True
    d._build_steps()
    bf16 = d.score(test).sequence
    assert not np.array_equal(bf16, fp32)  # the bf16 path really ran
    assert len(np.unique(bf16)) > 0.9 * len(bf16)  # no mass ties from bf16 logits
    assert abs(roc_auc(test.label, bf16) - roc_auc(test.label, fp32)) < 0.02


def test_jax_smoke_run_ends_ok_and_reports_compiles(compose_config, tmp_path):
    result = run(
        compose_config(
            [
                "experiment=smoke",
                "framework=jax",
                "objective=masked",
                "train.epochs=1",
                f"results_dir={tmp_path}",
            ]
        )
    )
    assert result.status == "ok"
    record = result.record
    assert record.framework == "jax"
    assert 1 <= record.training["compiles"]["train_step"] <= 3  # one per length bucket
    assert (result.run_dir / "checkpoint.safetensors").is_file()
    assert 0.0 <= record.result.roc_auc <= 1.0


def test_a_baseline_run_is_the_same_run_under_either_framework(compose_config, tmp_path):
    ids = {
        run(
            compose_config(
                ["experiment=smoke", "model=markov", f"framework={f}", f"results_dir={tmp_path}"]
            )
        ).run_id
        for f in ("torch", "jax")
    }
    assert len(ids) == 1


def test_checkpoint_errors_name_the_fix(compose_config, tmp_path):
    from benchmark.detectors.adapters.common import CHECKPOINT, CheckpointError

    common = ["experiment=smoke", "model=gru", f"results_dir={tmp_path}"]
    trained = run(compose_config(common))
    path = trained.run_dir / CHECKPOINT
    cases = [
        ([f"checkpoint={tmp_path / 'nope.safetensors'}"], "does not exist"),
        ([f"checkpoint={path}", "objective=masked"], "holds model=gru objective=classify"),
        ([f"checkpoint={path}", "framework=jax", "model.hidden_dim=16"], "use the model.* sizes"),
        ([f"checkpoint={path}", "model.hidden_dim=16"], "use the model.* sizes"),
    ]
    for overrides, message in cases:
        with pytest.raises(CheckpointError, match=message.replace("*", r"\*")):
            run(compose_config([*common, *overrides]))


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["classify", "next_event", "masked", "forecast"])
@pytest.mark.parametrize("model", MODELS)
def test_every_jax_detector_and_objective_runs_end_to_end(
    compose_config, tmp_path, model, objective
):
    """`python -m benchmark experiment=smoke framework=jax model=<m> objective=<o>` for all 16
    pairs (slow tier: 10-30 s each on two CPU cores, mostly XLA compilation)."""
    result = run(
        compose_config(
            [
                "experiment=smoke",
                "framework=jax",
                f"model={model}",
                f"objective={objective}",
                f"results_dir={tmp_path}",
            ]
        )
    )
    assert result.status == "ok"
    assert np.isfinite(result.record.result.roc_auc)
    assert result.record.training["compiles"]["train_step"] <= len(length_buckets(30))


def lstm_pair(smoke, objective: str = "classify"):
    """The smoke LSTM with its lax.scan and with JAX's reference of the cuDNN kernel, same
    weights, and a batch of sequences of different lengths."""
    from models_jax.layers import Speed
    from models_jax.lstm import LSTMDetector

    d = detector(smoke, "lstm", objective)
    scan = nnx.merge(d.eval_graph, d.params, d.rest)
    fused = LSTMDetector(d.cfg, nnx.Rngs(1), Speed(lstm_kernel="cudnn_reference"))
    nnx.update(fused, nnx.state(scan))
    fused.eval()
    test = smoke[1].arrays["test"]
    index = np.argsort(test.length, kind="stable")[::7][:24]
    batch = numpy_batch(test, index)
    assert len(set(test.length[index])) > 5  # padding of many widths
    return scan, fused, batch


@pytest.mark.parametrize("objective", ["classify", "next_event"])
def test_cudnn_layout_lstm_matches_the_scan_on_real_events(smoke, objective):
    """The packed-weight path (jax.experimental.rnn's layout and length semantics, here
    through its reference kernel) gives the scan's outputs on every real event; states after
    a sequence's end are zero."""
    scan, fused, batch = lstm_pair(smoke, objective)
    a, b = scan(batch), fused(batch)
    mask = batch["mask"]
    np.testing.assert_allclose(
        np.asarray(b["states"])[mask], np.asarray(a["states"])[mask], rtol=1e-5, atol=1e-6
    )
    assert not np.asarray(b["states"])[~mask].any()
    np.testing.assert_allclose(b["pooled"], a["pooled"], rtol=1e-5, atol=1e-6)
    if objective == "classify":
        np.testing.assert_allclose(b["sequence_logit"], a["sequence_logit"], atol=1e-5)
    else:
        for name in ("type_logits", "item_logits"):
            np.testing.assert_allclose(
                np.asarray(b[name])[mask], np.asarray(a[name])[mask], atol=1e-5
            )


def test_cudnn_layout_lstm_has_the_scans_gradients(smoke):
    scan, fused, batch = lstm_pair(smoke)

    def grads(model):
        graph, params, rest = nnx.split(model, nnx.Param, ...)
        loss = lambda p: nnx.merge(graph, p, rest)(batch)["sequence_logit"].sum()  # noqa: E731
        return jax.tree.leaves(jax.grad(loss)(params))

    for g_fused, g_scan in zip(grads(fused), grads(scan), strict=True):
        np.testing.assert_allclose(g_fused, g_scan, rtol=1e-4, atol=1e-6)


def test_cudnn_lstm_kernel_on_cpu_names_the_fix(smoke):
    config, prepared = smoke
    spec = detector_spec(config, prepared, "lstm", "classify", device="cpu", lstm_kernel="cudnn")
    with pytest.raises(ConfigError, match=r"needs an NVIDIA GPU .*framework.lstm_kernel=scan"):
        JaxDetector(spec)


def test_written_out_threefry_equals_jax_own():
    from jax.extend.random import threefry_2x32

    from models_jax.layers import threefry2x32

    rng = np.random.default_rng(0)
    for _ in range(3):
        key = rng.integers(0, 2**32, size=2, dtype=np.uint32)
        count = rng.integers(0, 2**32, size=1000, dtype=np.uint32)
        y0, y1 = threefry2x32(jax.numpy.asarray(key), count[:500], count[500:])
        expected = np.asarray(threefry_2x32(key, count))
        np.testing.assert_array_equal(np.concatenate([y0, y1]), expected)


@pytest.mark.parametrize("shape", [(256, 50, 64), (3, 5, 7)])
def test_dropout_keeps_the_configured_share_and_rescales_exactly(shape):
    from models_jax.layers import Dropout

    drop = Dropout(0.1, rngs=nnx.Rngs(dropout=0))
    ones = jax.numpy.ones(shape)
    first, second = np.asarray(drop(ones)), np.asarray(drop(ones))
    kept = first > 0
    keep = round(0.9 * 2**16) / 2**16
    np.testing.assert_allclose(first[kept], 1 / keep, rtol=1e-6)  # rescaled by the true share
    if kept.size > 10_000:
        sigma = np.sqrt(keep * (1 - keep) / kept.size)
        assert abs(kept.mean() - keep) < 5 * sigma
        # The four decisions drawn from one block, and neighbours, are not correlated.
        flat = kept.reshape(-1).astype(float)
        for lag in (1, 2, 3, 4):
            assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 0.01
        assert (kept != (second > 0)).mean() > 0.1  # a fresh mask per call
    drop.eval()
    np.testing.assert_array_equal(np.asarray(drop(ones)), np.ones(shape))


def test_unfused_dropout_switch_gives_nnx_dropouts_own_masks(smoke):
    from models_jax.layers import Dropout

    ones = jax.numpy.ones((4, 50, 64))
    ours = Dropout(0.1, nnx.Rngs(dropout=3), fused=False)(ones)
    theirs = nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=3))(ones)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    config, prepared = smoke
    for fused in (True, False):
        spec = detector_spec(config, prepared, "lstm", device="cpu", fused_dropout=fused)
        detector = JaxDetector(spec)
        model = MODEL_CLASSES["lstm"](detector.cfg, nnx.Rngs(0), detector.speed)
        dropouts = [m for _, m in nnx.iter_graph(model) if isinstance(m, Dropout)]
        assert len(dropouts) == 2  # embeddings, between the layers
        assert {d.fused for d in dropouts} == {fused}


def test_head_dropout_drops_in_training_only(smoke):
    """model.head_dropout (setup 2's 0.2): the output layer's input is dropped while training,
    so two training passes differ, and left whole in eval mode, where the output is the
    layer applied to the last state."""
    from dataclasses import replace

    from models_common.config import Head
    from models_jax.lstm import LSTMDetector

    d = detector(smoke, "lstm")
    cfg = replace(d.cfg, head=Head.pooled, event_head=False, dropout=0.0, head_dropout=0.5)
    model = LSTMDetector(cfg, nnx.Rngs(params=0, dropout=1))
    test = smoke[1].arrays["test"]
    batch = numpy_batch(test, np.arange(16))
    model.train()
    first, second = model(batch)["sequence_logit"], model(batch)["sequence_logit"]
    assert not np.allclose(first, second)
    model.eval()
    out = model(batch)
    np.testing.assert_allclose(out["sequence_logit"], model.heads.sequence(out["pooled"])[:, 0])
    assert "event_logit" not in out
