"""GPU tier (`pytest -m gpu`, `make test-gpu`): CUDA runs, bf16 autocast, CPU/GPU agreement.

Skipped where no CUDA device is present. Each test compares within one process, so it holds on
any GPU model.
"""

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmark.detectors.registry import create  # noqa: E402
from benchmark.evaluation.metrics import roc_auc  # noqa: E402
from benchmark.run.data import prepare_data  # noqa: E402
from benchmark.run.experiment import run  # noqa: E402

from .conftest import compose_typed, detector_spec  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
DEEP = ("lstm", "gru", "transformer", "multimodal")
FRAMEWORKS = ("torch", "jax")


def jax_on_gpu():
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees no GPU (install the gpu extra: make setup-gpu)")


OBJECTIVES = ("classify", "next_event", "masked", "forecast")


@pytest.fixture(scope="module")
def smoke_data():
    config = compose_typed(["experiment=smoke"])
    return config, prepare_data(config.dataset, config.anomaly, 0)


def spec_for(config, prepared, model, objective, device, precision, framework="torch"):
    return detector_spec(
        config, prepared, model, objective, name=framework, device=device, precision=precision
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("model", DEEP)
def test_bf16_smoke_run_on_cuda_ends_ok(compose_config, tmp_path, model, objective, framework):
    if framework == "jax":
        jax_on_gpu()
    cfg = compose_config(
        [
            "experiment=smoke",
            f"results_dir={tmp_path}",
            f"model={model}",
            f"objective={objective}",
            f"framework={framework}",
            "framework.device=cuda",
            "framework.precision=bf16",
        ]
    )
    result = run(cfg)
    assert result.status == "ok"
    fit = result.record.training
    assert fit["device"].lower().startswith("cuda")
    assert fit["bf16"] is True
    assert 0.0 <= result.record.result.roc_auc <= 1.0


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("model", DEEP)
def test_cuda_fp32_matches_cpu_and_bf16_stays_close(smoke_data, model, objective):
    """Same weights scored three ways: CUDA fp32 equals CPU fp32 to float tolerance; bf16
    autocast moves values by rounding but not the detector's quality (ROC-AUC within 0.03:
    a rank correlation would be too strict, tiny models leave many near-tied scores)."""
    config, prepared = smoke_data
    test = prepared.arrays["test"]
    gpu = create(model, "torch", spec_for(config, prepared, model, objective, "cuda", "fp32"))
    gpu.fit(prepared.arrays["train"], prepared.arrays["val"])
    cpu = create(model, "torch", spec_for(config, prepared, model, objective, "cpu", "fp32"))
    cpu.model.load_state_dict({k: v.cpu() for k, v in gpu.model.state_dict().items()})
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    fp32 = gpu.score(test).sequence
    np.testing.assert_allclose(fp32, cpu.score(test).sequence, rtol=1e-4, atol=1e-4)
    gpu.bf16 = True
    bf16 = gpu.score(test).sequence
    assert np.all(np.isfinite(bf16))
    assert abs(roc_auc(test.label, bf16) - roc_auc(test.label, fp32)) < 0.03


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("model", DEEP)
def test_jax_gpu_fp32_matches_cpu_and_bf16_stays_close(smoke_data, model, objective):
    jax_on_gpu()
    import jax

    config, prepared = smoke_data
    test = prepared.arrays["test"]
    spec = partial(spec_for, config, prepared, model, objective, framework="jax")
    gpu = create(model, "jax", spec("cuda", "fp32"))
    gpu.fit(prepared.arrays["train"], prepared.arrays["val"])
    cpu = create(model, "jax", spec("cpu", "fp32"))
    cpu.load_weights(gpu.canonical_weights())
    with jax.default_matmul_precision("highest"):
        fp32 = gpu.score(test).sequence
    np.testing.assert_allclose(fp32, cpu.score(test).sequence, rtol=1e-4, atol=1e-4)
    half = create(model, "jax", spec("cuda", "bf16"))
    half.load_weights(gpu.canonical_weights())
    bf16 = half.score(test).sequence
    assert np.all(np.isfinite(bf16))
    assert abs(roc_auc(test.label, bf16) - roc_auc(test.label, fp32)) < 0.03


def test_jax_cudnn_lstm_scores_like_the_scan_and_trains(smoke_data):
    """framework.lstm_kernel=cudnn (jax.experimental.rnn) on the scan's weights gives its
    scores, and training through cuDNN's backward pass stays finite."""
    jax_on_gpu()
    import jax

    config, prepared = smoke_data
    train, val, test = (prepared.arrays[s] for s in ("train", "val", "test"))
    spec = partial(spec_for, config, prepared, "lstm", "classify", "cuda", "fp32", "jax")
    scan = create("lstm", "jax", spec())
    scan.fit(train, val)
    scan_spec = spec()
    cudnn = replace(scan_spec.framework, lstm_kernel="cudnn")
    fused = create("lstm", "jax", replace(scan_spec, framework=cudnn))
    fused.load_weights(scan.canonical_weights())
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(
            fused.score(test).sequence, scan.score(test).sequence, rtol=1e-4, atol=1e-4
        )
    fit = fused.fit(train, val)
    assert all(np.isfinite(h["train_loss"]) for h in fit["history"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_carried_state_on_the_gpu_scores_the_cpu_prefix_pass(smoke_data, model, framework):
    """The stateful scorer's tables on the device, fed the stream in time order: the CPU's
    offline scores of every prefix, to float tolerance; and its cost figures at 10,000
    sequences in flight."""
    from benchmark.online.cost import scoring_cost
    from benchmark.online.stream import online_scores, replay

    if framework == "jax":
        jax_on_gpu()
    config, prepared = smoke_data
    stream = prepared.arrays["test"].take(np.arange(40))
    gpu = create(
        model, framework, spec_for(config, prepared, model, "classify", "cuda", "fp32", framework)
    )
    cpu = create(
        model, framework, spec_for(config, prepared, model, "classify", "cpu", "fp32", framework)
    )
    cpu.load_weights(gpu.canonical_weights())
    expected = online_scores(lambda a: cpu.score(a).sequence, stream)
    np.testing.assert_allclose(
        replay(gpu.stateful_scorer(), stream, most=16), expected, rtol=1e-4, atol=1e-4
    )
    figures = scoring_cost(gpu.stateful_scorer(), stream, 10_000, 1024, seconds=0.5)
    assert figures["events_per_s"] > 0
