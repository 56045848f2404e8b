import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from benchmark.detectors.adapters import torch_objectives as objectives
from benchmark.detectors.adapters.common import CHECKPOINT, lr_factor
from benchmark.detectors.adapters.torch_adapter import MODELS, TorchDetector
from benchmark.run.experiment import run
from models_common.config import MODALITIES, OBJECTIVES, DetectorConfig
from models_torch.multimodal import MultimodalAttentionDetector

LENGTHS = [7, 3, 1, 5]


VOCABULARIES = dict(
    n_event_types=10,
    n_items=30,
    n_categories=8,
    n_gap_buckets=21,
    n_price_buckets=34,
    n_devices=130,
    max_length=16,
)


def small_model(name: str, **kw):
    """The harness's model section at test sizes."""
    from benchmark.config import ModelConfig, ModelName

    sizes = dict(embed_dim=8, hidden_dim=16, num_layers=1, num_heads=2, ff_dim=16, dropout=0.0)
    return ModelConfig(name=ModelName(name), **sizes, **kw)


def config(objective: str, **kw) -> DetectorConfig:
    base = dict(
        **VOCABULARIES,
        objective=objective,
        embed_dim=8,
        hidden_dim=16,
        num_layers=2,
        num_heads=2,
        ff_dim=16,
        dropout=0.1,
        profile_cardinalities=(7, 5, 6),
        n_brands=9,
        n_words=WORDS,
        image_dim=IMAGE_DIM,
        text_dim=6,
        n_anomaly_types=9,
    )
    base.update(kw)
    return DetectorConfig(**base)


WORDS, IMAGE_DIM = 21, 6


def make_batch(seed: int = 0, width: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = len(LENGTHS)
    mask = torch.arange(width)[None, :] < torch.tensor(LENGTHS)[:, None]

    def ints(high: int) -> torch.Tensor:
        return torch.randint(2, high, (b, width), generator=g) * mask

    return {
        "event_type": ints(10),
        "item": ints(30),
        "category": ints(8),
        "gap_bucket": ints(21),
        "price_bucket": ints(34),
        "device": ints(7),
        "brand": ints(9),
        "mask": mask,
        "log_gap": torch.rand(b, width, generator=g) * 4 * mask,
        "log_price": torch.rand(b, width, generator=g) * 5 * mask,
        "profile": torch.randint(1, 5, (b, 3), generator=g),
        "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
        "anomaly_class": torch.tensor([0, 3, 0, 9]),
        "event_label": (torch.rand(b, width, generator=g) < 0.3).float() * mask,
        **media(g, mask),
    }


def media(g: torch.Generator, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Query words on about half the events (two to four words, id + 1, 0 pads) and item
    images on about three quarters (zeros: an item without features)."""
    b, width = mask.shape
    searched = (torch.rand(b, width, generator=g) < 0.5) & mask
    n_words = torch.randint(2, 5, (b, width), generator=g) * searched
    tokens = torch.randint(1, WORDS, (b, width, 4), generator=g)
    tokens = tokens * (torch.arange(4) < n_words[..., None])
    pictured = (torch.rand(b, width, generator=g) < 0.75) & mask
    image = torch.randn(b, width, IMAGE_DIM, generator=g) * pictured[..., None]
    return {"query_tokens": tokens, "item_image": image}


def pad(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in batch.items():
        if v.ndim >= 2 and k != "profile":
            zeros = torch.zeros(v.shape[0], extra, *v.shape[2:], dtype=v.dtype)
            v = torch.cat([v, zeros], dim=1)
        out[k] = v
    return out


CASES = [(m, o) for m in MODELS for o in OBJECTIVES]


@pytest.mark.parametrize(("name", "objective"), CASES)
def test_forward_shapes(name, objective):
    torch.manual_seed(0)
    model = MODELS[name](config(objective)).eval()
    batch = make_batch()
    out = model(batch)
    assert out["states"].shape == (4, 7, 16)
    if objective == "classify":
        assert out["sequence_logit"].shape == (4,)
        assert out["event_logit"].shape == (4, 7)
    elif objective == "classify_type":
        assert out["class_logits"].shape == (4, 10)  # normal + nine types
    elif objective == "forecast":
        assert out["forecast"].shape == (4, 7, 11)
    else:
        assert out["type_logits"].shape == (4, 7, 10)
        assert out["item_logits"].shape == (4, 7, 30)
        assert out["gap_logits"].shape == (4, 7, 21)
    seq, event, _ = objectives.sequence_scores(model, batch, objective, 0.25, 5)
    assert seq.shape == (4,)
    assert torch.all(torch.isfinite(seq))
    if objective == "classify_type":  # a sequence classifier: no event scores
        assert event is None
        return
    assert event.shape == (4, 7)
    assert torch.all(event[~batch["mask"]] == 0)


@pytest.mark.parametrize(("name", "objective"), CASES)
def test_padding_changes_no_score(name, objective):
    torch.manual_seed(1)
    model = MODELS[name](config(objective)).eval()
    batch = make_batch(seed=2)
    with torch.no_grad():
        seq, event, alt = objectives.sequence_scores(model, batch, objective, 0.25, 5)
        seq_p, event_p, alt_p = objectives.sequence_scores(model, pad(batch, 5), objective, 0.25, 5)
    torch.testing.assert_close(seq_p, seq, atol=1e-5, rtol=1e-5)
    if event is not None:
        torch.testing.assert_close(event_p[:, :7], event, atol=1e-5, rtol=1e-5)
        assert torch.all(event_p[:, 7:] == 0)
    for key in alt:
        torch.testing.assert_close(alt_p[key], alt[key])


@pytest.mark.parametrize(("name", "objective"), CASES)
def test_a_few_steps_lower_the_loss(name, objective):
    torch.manual_seed(3)
    model = MODELS[name](config(objective, dropout=0.0))
    batch = make_batch(seed=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    first = float(objectives.loss(model, batch, objective, 0.3, generator).detach())
    for _ in range(40):
        generator.manual_seed(0)  # the same masked positions each step
        opt.zero_grad()
        objectives.loss(model, batch, objective, 0.3, generator).backward()
        opt.step()
    generator.manual_seed(0)
    assert float(objectives.loss(model, batch, objective, 0.3, generator).detach()) < 0.7 * first


def test_type_classifier_starts_at_ln_10_scores_one_minus_p_normal_and_counts_hits():
    """Ten classes (normal + nine types): small initial logits give about the article's
    initial loss ln 10 = 2.3026; the score orders sequences as 1 - p(normal) does; ``hits`` counts
    the arg-max answers that are right."""
    torch.manual_seed(8)
    model = MODELS["transformer"](config("classify_type", dropout=0.0)).eval()
    batch = make_batch(seed=9)
    stats: dict = {}
    with torch.no_grad():
        loss = objectives.loss(model, batch, "classify_type", 0.3, stats=stats)
        logits = model(batch)["class_logits"]
        score, _, _ = objectives.sequence_scores(model, batch, "classify_type", 0.3, 5)
    assert float(loss) == pytest.approx(np.log(10), abs=0.05)
    not_normal = 1 - torch.softmax(logits, dim=-1)[:, 0]
    assert torch.equal(torch.argsort(score), torch.argsort(not_normal))
    torch.testing.assert_close(torch.sigmoid(score), not_normal)
    right = int((logits.argmax(-1) == batch["anomaly_class"]).sum())
    assert int(stats["hits"]) == right
    binary: dict = {}
    classify = MODELS["transformer"](config("classify", dropout=0.0)).eval()
    with torch.no_grad():
        objectives.loss(classify, batch, "classify", 0.3, stats=binary)
        logit = classify(batch)["sequence_logit"]
    assert int(binary["hits"]) == int(((logit > 0).float() == batch["label"]).sum())


def test_zscore_of_the_price_input_uses_training_moments_only():
    from types import SimpleNamespace

    from benchmark.config import ObjectiveName
    from benchmark.detectors.adapters.common import detector_config
    from benchmark.detectors.registry import DataInfo
    from benchmark.run.detect import log_price_moments
    from datasets.features import UNKNOWN

    def split(prices: list[float]):
        n = len(prices)
        log_price = np.zeros((1, n + 1), np.float32)
        log_price[0, :n] = prices
        bucket = np.full((1, n + 1), 5)
        bucket[0, 0] = UNKNOWN  # a price-less event: left out of the moments
        mask = np.ones((1, n + 1), bool)
        mask[0, n] = False  # padding: left out too
        return SimpleNamespace(log_price=log_price, price_bucket=bucket, mask=mask)

    mean, std = log_price_moments(split([9.0, 2.0, 4.0, 6.0]))
    assert (mean, std) == pytest.approx((4.0, np.std([2.0, 4.0, 6.0])))
    assert log_price_moments(split([9.0, 3.0])) == (0.0, 1.0)  # one priced event: identity
    for standardize, model, expected in [
        (True, "multimodal", (4.0, 1.5)),
        (False, "multimodal", (0.0, 1.0)),
        (True, "transformer", (0.0, 1.0)),  # no numeric input to scale
    ]:
        spec = SimpleNamespace(
            model=small_model(model, standardize_inputs=standardize),
            objective=SimpleNamespace(name=ObjectiveName("classify")),
            data=DataInfo(
                **VOCABULARIES,
                n_anomaly_types=9,
                price_mean=4.0,
                price_std=1.5,
                modalities=("behaviour", "item_attributes"),
            ),
        )
        cfg = detector_config(spec)
        assert (cfg.price_mean, cfg.price_std) == expected


def test_the_modalities_a_run_chooses_reach_the_model_and_no_other_detector_reads_them():
    from types import SimpleNamespace

    from benchmark.config import ObjectiveName
    from benchmark.detectors.adapters.common import detector_config, reads_media
    from benchmark.detectors.registry import DataInfo

    data = DataInfo(
        **VOCABULARIES,
        profile_cardinalities=(3, 4),
        n_brands=5,
        n_words=9,
        image_dim=4,
        modalities=("behaviour", "profile", "item_attributes", "query_text", "item_image"),
    )

    def chosen(model: str, modalities: list[str]) -> DetectorConfig:
        return detector_config(
            SimpleNamespace(
                model=small_model(model, modalities=modalities),
                objective=SimpleNamespace(name=ObjectiveName("classify")),
                data=data,
            )
        )

    for modalities in (["behaviour"], ["behaviour", "query_text"], list(MODALITIES)):
        cfg = chosen("multimodal", modalities)
        used = MultimodalAttentionDetector(cfg).modalities_used
        assert used == tuple(m for m in MODALITIES if m in modalities)
        assert reads_media(cfg) == ("query_text" in modalities)
    plain = chosen("transformer", list(MODALITIES))
    assert (plain.n_words, plain.image_dim, plain.n_brands, plain.profile_cardinalities) == (
        0,
        0,
        0,
        (),
    )
    assert not reads_media(plain)


def test_multimodal_price_input_is_zscored_with_the_configured_moments():
    torch.manual_seed(10)
    raw = MultimodalAttentionDetector(config("classify", dropout=0.0)).eval()
    scaled = MultimodalAttentionDetector(
        config("classify", dropout=0.0, price_mean=2.0, price_std=0.5)
    ).eval()
    scaled.load_state_dict(raw.state_dict())
    batch = make_batch(seed=11)
    shifted = {**batch, "log_price": (batch["log_price"] - 2.0) / 0.5}
    with torch.no_grad():
        torch.testing.assert_close(scaled(batch)["sequence_logit"], raw(shifted)["sequence_logit"])


def test_shared_layers_apply_one_block_num_layers_times():
    torch.manual_seed(12)
    shared = MODELS["transformer"](config("classify", dropout=0.0, share_layers=True, num_layers=3))
    separate = MODELS["transformer"](config("classify", dropout=0.0, num_layers=3))
    block = sum(p.numel() for p in separate.encoder.blocks[0].parameters())
    assert len(shared.encoder.blocks) == 1
    n_shared, n_separate = (sum(p.numel() for p in m.parameters()) for m in (shared, separate))
    assert n_separate - n_shared == 2 * block
    # The shared model equals a 3-block model whose blocks all hold the shared weights.
    state = shared.state_dict()
    for i in (1, 2):
        state.update({k.replace("blocks.0.", f"blocks.{i}."): v for k, v in state.items()})
    separate.load_state_dict(state)
    batch = make_batch(seed=13)
    with torch.no_grad():
        torch.testing.assert_close(shared.eval()(batch)["states"], separate.eval()(batch)["states"])


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_a_lag_window_state_is_the_recurrence_over_that_window_alone(name):
    """With lag_window=d, event t's state is what the recurrence gives reading events
    t - d + 1 .. t alone (zero inputs before the first event), not the whole history."""
    torch.manual_seed(14)
    d = 3
    model = MODELS[name](config("forecast", dropout=0.0, num_layers=2, lag_window=d)).eval()
    batch = make_batch(seed=15)
    with torch.no_grad():
        states = model(batch)["states"]
        x = model.embed(batch)
        for t in range(x.shape[1]):
            window = x[:, max(0, t - d + 1) : t + 1]
            window = torch.cat(
                [torch.zeros(x.shape[0], d - window.shape[1], x.shape[2]), window], 1
            )
            torch.testing.assert_close(states[:, t], model.rnn(window)[0][:, -1])
        whole = MODELS[name](config("forecast", dropout=0.0, num_layers=2))
        whole.load_state_dict(model.state_dict())
        history = whole.eval()(batch)["states"]
    assert not torch.allclose(states[:, d:], history[:, d:], atol=1e-4)  # the history is cut


def test_the_last_state_head_reads_the_last_state_and_drops_the_event_output():
    """head=pooled without an event head: the sequence logit is the output layer applied to
    the state at each sequence's last real event, and no per-event output exists."""
    torch.manual_seed(16)
    model = MODELS["lstm"](config("classify", dropout=0.0, head="pooled", event_head=False))
    batch = make_batch(seed=17)
    with torch.no_grad():
        out = model.eval()(batch)
    last = out["states"][torch.arange(len(LENGTHS)), torch.tensor(LENGTHS) - 1]
    expected = model.heads.sequence(last)[:, 0]
    torch.testing.assert_close(out["sequence_logit"], expected)
    assert "event_logit" not in out
    assert objectives.sequence_scores(model, batch, "classify", 0.15, 10)[1] is None


FUSIONS = pytest.mark.parametrize("fusion", ["early", "late"])


@FUSIONS
def test_multimodal_exposes_input_dependent_attention_and_gates(fusion):
    torch.manual_seed(5)
    model = MultimodalAttentionDetector(config("classify", fusion=fusion)).eval()
    batch = make_batch(seed=6)
    out = model(batch)
    weights, gates = out["attention_weights"], out["gates"]
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    assert torch.all(weights[~batch["mask"]] == 0)
    assert gates.shape == (4, 5)
    torch.testing.assert_close(gates.sum(dim=1), torch.ones(4))
    other = make_batch(seed=7)
    assert not torch.allclose(model(other)["attention_weights"], weights)
    assert not torch.allclose(model(other)["gates"], gates)
    assert model.modalities_used == MODALITIES


@FUSIONS
def test_multimodal_uses_only_the_modalities_a_dataset_has(fusion):
    model = MultimodalAttentionDetector(
        config(
            "classify", fusion=fusion, profile_cardinalities=(), n_brands=0, n_words=0, image_dim=0
        )
    ).eval()
    absent = ("profile", "brand", "query_tokens", "item_image")
    batch = {k: v for k, v in make_batch().items() if k not in absent}
    gates = model(batch)["gates"]
    assert torch.all(gates[:, 1:] == 0)
    torch.testing.assert_close(gates[:, 0], torch.ones(4))
    assert model.modalities_used == ("behaviour",)


def test_early_fusion_weighs_only_what_each_event_has():
    """Per real event the gates sum to 1; the text gate is 0 on events without a query, the
    image gate 0 on items without features; padding weighs nothing."""
    torch.manual_seed(8)
    model = MultimodalAttentionDetector(config("classify", fusion="early")).eval()
    batch = make_batch(seed=9)
    gates = model(batch)["event_gates"]  # (B, T, 5)
    mask = batch["mask"]
    torch.testing.assert_close(gates[mask].sum(-1), torch.ones(int(mask.sum())))
    assert torch.all(gates[~mask] == 0)
    no_query = mask & (batch["query_tokens"][..., 0] == 0)
    no_image = mask & (batch["item_image"] == 0).all(-1)
    assert no_query.any()
    assert no_image.any()
    assert (mask & ~no_query).any()
    assert torch.all(gates[..., MODALITIES.index("query_text")][no_query] == 0)
    assert torch.all(gates[..., MODALITIES.index("item_image")][no_image] == 0)
    assert torch.all(gates[..., MODALITIES.index("query_text")][mask & ~no_query] > 0)


@FUSIONS
def test_a_hidden_event_shows_nothing_of_itself(fusion):
    """The masked objective hides an event: its query words, image and brand then change no
    output; the same change at a visible event does."""
    torch.manual_seed(14)
    model = MultimodalAttentionDetector(config("masked", fusion=fusion, dropout=0.0)).eval()
    batch = make_batch(seed=15)
    hide = torch.zeros_like(batch["mask"])
    hide[0, 2] = hide[3, 1] = True

    def altered(row: int, t: int) -> dict[str, torch.Tensor]:
        other = {k: v.clone() for k, v in batch.items()}
        other["query_tokens"][row, t] = torch.tensor([5, 6, 7, 0])
        other["item_image"][row, t] = 3.0
        other["brand"][row, t] = 8
        return other

    with torch.no_grad():
        base = model(batch, hide)
        for key, value in model(altered(0, 2), hide).items():
            torch.testing.assert_close(value, base[key], msg=key)
        changed = model(altered(0, 3), hide)
    assert not torch.allclose(changed["item_logits"], base["item_logits"])


def test_query_text_is_the_mean_of_its_words():
    """Word order and padding within a query change nothing; another word does."""
    torch.manual_seed(16)
    model = MultimodalAttentionDetector(config("classify", dropout=0.0)).eval()
    batch = make_batch(seed=17)
    tokens = batch["query_tokens"]
    n = (tokens > 0).sum(-1, keepdim=True)
    position = torch.arange(tokens.shape[-1])
    reversed_order = torch.where(position < n, n - 1 - position, position)
    shuffled = {**batch, "query_tokens": torch.gather(tokens, -1, reversed_order)}
    swapped = {**batch, "query_tokens": torch.where(tokens > 0, (tokens % (WORDS - 1)) + 1, 0)}
    with torch.no_grad():
        base = model(batch)["sequence_logit"]
        torch.testing.assert_close(model(shuffled)["sequence_logit"], base)
        assert not torch.allclose(model(swapped)["sequence_logit"], base)


def test_learning_rate_warms_up_then_decays():
    factors = [lr_factor(s, warmup=10, total=110, schedule="cosine") for s in range(110)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.5, abs=0.02)
    assert factors[-1] < 0.01
    assert lr_factor(50, 10, 110, "constant") == 1.0


def test_checkpoint_is_safetensors_and_restores_the_scores(compose_config, tmp_path):
    result = run(
        compose_config(
            ["experiment=smoke", "model=gru", "objective=next_event", f"results_dir={tmp_path}"]
        )
    )
    assert result.status == "ok"
    assert result.record.training["epochs"] >= 1
    state = load_file(str(result.run_dir / CHECKPOINT))
    saved = np.load(result.run_dir / "scores.npz")
    assert "embed.item.weight" in state
    assert result.record.n_params == sum(v.numel() for v in state.values())
    assert np.isfinite(saved["test_score"]).all()
    assert 0.0 <= result.record.result.alternative_roc_auc["top_k_miss_rate"] <= 1.0


def small_spec(model: str, modalities: tuple[str, ...] = ("behaviour",), **framework):
    """A CPU DetectorSpec of the type classifier at test sizes; ``framework`` sets fields of
    the framework section."""
    from benchmark.config import (
        FrameworkConfig,
        FrameworkName,
        ObjectiveConfig,
        ObjectiveName,
        TrainConfig,
    )
    from benchmark.detectors.registry import DataInfo, DetectorSpec

    return DetectorSpec(
        model=small_model(model),
        objective=ObjectiveConfig(name=ObjectiveName.classify, top_k=5),
        train=TrainConfig(batch_size=4, warmup=0.2),
        framework=FrameworkConfig(name=FrameworkName.torch, device="cpu", **framework),
        data=DataInfo(**VOCABULARIES, modalities=modalities),
        seed=0,
    )


def test_detector_reports_parameters_and_modalities():
    detector = TorchDetector(small_spec("multimodal"))
    assert detector.n_params == sum(p.numel() for p in detector.model.parameters())
    assert detector.modalities_used == ("behaviour",)


def test_fused_optimizer_switch_takes_the_same_steps():
    """``framework.fused_optimizer`` swaps AdamW's kernel, not its update."""
    after = {}
    for fused in (True, False):
        detector = TorchDetector(small_spec("lstm", fused_optimizer=fused))
        before = {n: p.detach().clone() for n, p in detector.model.named_parameters()}
        opt, sched = detector.optimizer(total_steps=20)
        assert opt.param_groups[0]["fused"] is (True if fused else None)
        detector.model.train()
        for seed in range(5):
            detector.train_step(make_batch(seed), opt, sched, None)
        after[fused] = {n: p.detach() for n, p in detector.model.named_parameters()}
    for name, value in after[True].items():
        torch.testing.assert_close(value, after[False][name], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(after[True][n], before[n]) for n in before)


def test_cpu_embedding_gradient_equals_pytorchs_own_and_skips_padding():
    import torch

    from models_torch.layers import Embedding

    torch.manual_seed(0)
    ours, theirs = Embedding(30, 8), torch.nn.Embedding(30, 8, padding_idx=0)
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 30, (16, 20))
    ids[:, -5:] = 0  # padding
    upstream = torch.randn(16, 20, 8)
    for table in (ours, theirs):
        (table(ids) * upstream).sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-6, atol=1e-6)
    assert ours.weight.grad[0].abs().max() == 0
    assert ours.weight.grad[1:].abs().max() > 0
    with torch.no_grad():  # scoring takes PyTorch's own lookup: same values
        torch.testing.assert_close(ours(ids), theirs(ids))


@pytest.mark.parametrize("shape", [(256, 50, 64), (3, 5, 7)])
def test_cpu_dropout_keeps_the_configured_share_and_rescales_exactly(shape):
    from models_torch.layers import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.1).train()
    ones = torch.ones(shape)
    first, second = drop(ones), drop(ones)
    kept = first > 0
    keep = round(0.9 * 2**16) / 2**16
    torch.testing.assert_close(first[kept], torch.full_like(first[kept], 1 / keep))
    if kept.numel() > 10_000:
        sigma = np.sqrt(keep * (1 - keep) / kept.numel())
        assert abs(kept.float().mean().item() - keep) < 5 * sigma
        # The four decisions cut from one 64-bit draw, and neighbours, are not correlated.
        flat = kept.reshape(-1).double().numpy()
        for lag in (1, 2, 3, 4):
            assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 0.01
        assert (kept != (second > 0)).float().mean() > 0.1  # a fresh mask per call
    torch.testing.assert_close(drop.eval()(ones), ones)


def test_cpu_dropout_gradient_is_the_mask_and_extreme_rates_stay_finite():
    from models_torch.layers import Dropout

    x = torch.randn(64, 33, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    kept = y != 0
    keep = 1 - round(0.3 * 2**16) / 2**16
    torch.testing.assert_close(x.grad, kept.float() / keep)
    assert torch.equal(Dropout(1 - 1e-9).train()(x), torch.zeros_like(x))  # keeps nothing
    assert torch.equal(Dropout(1e-9).train()(x), x)  # rounds to dropping nothing


def test_unfused_dropout_switch_gives_pytorchs_own_masks():
    from models_torch.layers import Dropout, use_fast_dropout

    ones = torch.ones(8, 50, 64)
    ours, theirs = Dropout(0.1).train(), torch.nn.Dropout(0.1).train()
    use_fast_dropout(ours, False)
    torch.manual_seed(3)
    a = ours(ones)
    torch.manual_seed(3)
    assert torch.equal(a, theirs(ones))
    detector = TorchDetector(small_spec("transformer", fused_dropout=False))
    dropouts = [m for m in detector.model.modules() if isinstance(m, Dropout)]
    # embeddings; per block: attention weights, residual branches
    assert len(dropouts) == 1 + 2 * detector.cfg.num_layers
    assert {d.fast for d in dropouts} == {False}
    detector = TorchDetector(small_spec("transformer"))
    assert {d.fast for d in detector.model.modules() if isinstance(d, Dropout)} == {True}


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_cpu_dropout_masks_computes_what_sdpa_does(causal):
    """With a rate that rounds to dropping nothing, the explicit training path (whose weights
    the CPU masks drop) gives scaled_dot_product_attention's result."""
    from models_torch.layers import AttentionBlock, attention_mask

    torch.manual_seed(0)
    block = AttentionBlock(width=16, heads=2, ff_dim=32, dropout=1e-9)
    x = torch.randn(4, 7, 16)
    mask = torch.arange(7)[None, :] < torch.tensor(LENGTHS)[:, None]
    allowed = attention_mask(mask, causal)
    assert block.train().attention_dropout.drops_here(x)
    explicit = block(x, allowed)
    torch.testing.assert_close(explicit, block.eval()(x, allowed), rtol=1e-5, atol=1e-6)


def test_a_multimodal_run_explains_its_top_sequences(compose_config, tmp_path):
    """explanations.json holds the ten highest-scored test sequences, best first, each event
    as the run saw it with the attention it received (summing to 1 over the sequence) and the
    modality weights; the report renders them as a strip of shaded events."""
    import json

    from benchmark.records.store import EXPLANATIONS_FILE
    from benchmark.report.page import explanation_html, explanation_lines

    overrides = ["experiment=smoke", "model=multimodal", f"results_dir={tmp_path}"]
    result = run(compose_config(overrides))
    found = json.loads((result.run_dir / EXPLANATIONS_FILE).read_text())
    saved = np.load(result.run_dir / "scores.npz")
    sequences = found["sequences"]
    top = np.sort(saved["test_score"])[::-1][:10]
    np.testing.assert_allclose([s["score"] for s in sequences], top, rtol=1e-6)
    assert [s["rank"] for s in sequences] == list(range(1, 11))
    for s in sequences:
        row = s["row"]
        assert s["anomalous"] == bool(saved["test_label"][row])
        assert len(s["events"]) == int(saved["test_mask"][row].sum())
        assert sum(e["attention"] for e in s["events"]) == pytest.approx(1.0, abs=1e-5)
        injected = [e["injected"] for e in s["events"]]
        assert injected == saved["test_event_label"][row][: len(injected)].astype(bool).tolist()
        assert sum(s["modality_weights"].values()) == pytest.approx(1.0, abs=1e-5)
        assert set(s["modality_weights"]) == set(MODALITIES)
    page = explanation_html(found, 5)
    assert page.count("<h4>") == 5
    assert page.count('class="event"') == sum(len(s["events"]) for s in sequences[:5])
    assert len(explanation_lines(found, 5)) == 5
    # a detector without attention leaves no file
    plain = run(compose_config([*overrides[:1], "model=gru", overrides[2]]))
    assert not (plain.run_dir / EXPLANATIONS_FILE).exists()
