import numpy as np
import pytest
import scipy.fft
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

from edgetran.errors import ArchitectureError
from edgetran.model import (
    FlexiBertConfig,
    FlexiBertForMaskedLM,
    FlexiBertForSequenceClassification,
    FlexiBertModel,
)
from edgetran.model.modeling import dct_basis, fourier_basis
from edgetran.space import Architecture, Layer, named_architecture, sample
from edgetran.space.costs import estimate_costs

VOCAB = 99


def tiny_config(arch, **kwargs):
    kwargs.setdefault("vocab_size", VOCAB)
    kwargs.setdefault("max_position_embeddings", 64)
    return FlexiBertConfig(arch, **kwargs)


def inputs(batch=3, seq=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, seq - 4 :] = 0
    mask[2, 3:] = 0
    return ids, mask


def test_reference_parameter_counts(reference_models):
    for entry in reference_models:
        arch = Architecture.from_model_dict(entry["model_dict"])
        with torch.device("meta"):
            model = FlexiBertModel(FlexiBertConfig(arch))
        count = sum(p.numel() for p in model.parameters())
        assert round(count / 1e6, 2) == entry["parameters_millions"], entry["hash"]
        assert estimate_costs(arch).parameters == count


def test_forward_shapes_all_ops(tiny_hetero):
    torch.manual_seed(0)
    model = FlexiBertModel(tiny_config(tiny_hetero)).eval()
    ids, mask = inputs()
    out = model(ids, mask)
    assert out.last_hidden_state.shape == (3, 12, 16)
    assert out.pooler_output.shape == (3, 16)
    assert torch.isfinite(out.last_hidden_state).all()


@pytest.mark.parametrize("position", ["relative_key", "absolute"])
def test_padding_does_not_leak_into_attention_heads(position):
    """Padded tokens change nothing at kept positions of sa heads.

    DFT/DCT heads mix every token and convolutions see their window, by design (FNet,
    ConvBERT), so they are not part of this check.
    """
    arch = Architecture.from_dict(
        {"layers": [{"hidden": 32, "heads": ["sa_sdp", "sa_wma"], "head_dim": 16, "ff": [64]}]}
    )
    model = FlexiBertModel(tiny_config(arch, position_embedding_type=position)).eval()
    ids, mask = inputs()
    other = ids.clone()
    other[mask == 0] = (other[mask == 0] + 1) % VOCAB
    keep = mask.bool()
    a, b = model(ids, mask).last_hidden_state, model(other, mask).last_hidden_state
    torch.testing.assert_close(a[keep], b[keep])


def test_dft_basis_equals_torch_fft():
    v = torch.randn(2, 3, 20, 8, dtype=torch.float64)
    cos_s, sin_s = fourier_basis(20, torch.float64)
    cos_d, sin_d = fourier_basis(8, torch.float64)
    ours = cos_s @ (v @ cos_d) - sin_s @ (v @ sin_d)
    reference = torch.fft.fft(torch.fft.fft(v, dim=-1), dim=-2).real
    torch.testing.assert_close(ours, reference)


def test_dct_basis_equals_unnormalised_dct2():
    v = np.random.default_rng(0).standard_normal((2, 20, 8))
    ours = dct_basis(20, torch.float64) @ (torch.from_numpy(v) @ dct_basis(8, torch.float64).T)
    reference = scipy.fft.dct(scipy.fft.dct(v, type=2, axis=-1), type=2, axis=-2)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-9)


@pytest.mark.parametrize("basis", [fourier_basis, dct_basis])
def test_float32_basis_stays_within_1e6_of_float64(basis):
    exact = basis(512, torch.float32)
    fast = basis(512, torch.float32, work_dtype=torch.float32)
    assert (exact - fast).abs().max() < 1e-6


def test_exported_dft_and_dct_heads_compute_in_float32():
    """LiteRT rejects float64 ops (a ``cos`` on float64 stopped its converter)."""
    arch = Architecture((Layer(16, ("l_dft", "l_dct"), 8, (32,)),))
    model = FlexiBertModel(tiny_config(arch)).eval()
    ids, mask = inputs()
    program = torch.export.export(model, (ids, mask))
    dtypes = {
        node.meta["val"].dtype
        for node in program.graph.nodes
        if isinstance(node.meta.get("val"), torch.Tensor)
    }
    assert torch.float64 not in dtypes


def test_dft_head_uses_the_fft_of_values():
    """A lone l_dft head outputs P·V + Re(FFT2(V)), checked against torch.fft end to end."""
    arch = Architecture.from_dict(
        {"layers": [{"hidden": 16, "heads": ["l_dft", "l_dft"], "head_dim": 8, "ff": [16]}]}
    )
    model = FlexiBertModel(tiny_config(arch, position_embedding_type="absolute")).eval()
    attention = model.encoder.layer[0].attention
    x = torch.randn(1, 10, 16)
    mask = torch.zeros(1, 1, 1, 10)
    v = attention._split(attention.value(x))
    expected_context = v.mean(dim=2, keepdim=True) + torch.fft.fft2(v).real
    expected = attention.LayerNorm(
        attention.dense(expected_context.transpose(1, 2).flatten(2)) + x
    )
    torch.testing.assert_close(attention(x, mask), expected, atol=1e-5, rtol=1e-5)


def test_save_and_auto_load_every_head(tmp_path, tiny_hetero):
    ids, mask = inputs()
    for cls, auto in [
        (FlexiBertModel, AutoModel),
        (FlexiBertForMaskedLM, AutoModelForMaskedLM),
        (FlexiBertForSequenceClassification, AutoModelForSequenceClassification),
    ]:
        model = cls(tiny_config(tiny_hetero, num_labels=3)).eval()
        model.save_pretrained(tmp_path / cls.__name__)
        loaded = auto.from_pretrained(tmp_path / cls.__name__).eval()
        assert type(loaded) is cls
        assert loaded.config.arch == tiny_hetero
        first, second = model(ids, mask), loaded(ids, mask)
        key = "last_hidden_state" if cls is FlexiBertModel else "logits"
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)


def test_heads_compute_losses(tiny_hetero):
    ids, mask = inputs()
    mlm = FlexiBertForMaskedLM(tiny_config(tiny_hetero))
    labels = ids.clone()
    labels[mask == 0] = -100
    out = mlm(ids, mask, labels=labels)
    assert out.logits.shape == (3, 12, VOCAB) and out.loss.item() > 0
    out.loss.backward()
    assert mlm.flexibert.encoder.layer[1].attention.conv["c_9"].kernel_weight.grad is not None
    assert not mlm.config.tie_word_embeddings
    cls = FlexiBertForSequenceClassification(tiny_config(tiny_hetero, num_labels=2))
    assert cls(ids, mask, labels=torch.tensor([0, 1, 1])).logits.shape == (3, 2)
    regression = FlexiBertForSequenceClassification(tiny_config(tiny_hetero, num_labels=1))
    assert regression(ids, mask, labels=torch.tensor([0.1, 0.5, 0.9])).loss.item() >= 0


def test_sa_heads_are_not_zeroed():
    """The reference zeroed sa heads' output; ours is softmax(QKᵀ/√d + rel)·V."""
    arch = named_architecture("bert-tiny")
    model = FlexiBertModel(tiny_config(arch)).eval()
    attention = model.encoder.layer[0].attention
    x = torch.randn(1, 6, 128)
    q, k, v = (attention._split(m(x)) for m in (attention.query, attention.key, attention.value))
    rel = attention._relative_scores(q)
    probs = torch.softmax((q @ k.transpose(-1, -2) + rel) / 8.0, dim=-1)
    context = (probs @ v).transpose(1, 2).flatten(2)
    expected = attention.LayerNorm(attention.dense(context) + x)
    torch.testing.assert_close(attention(x, torch.zeros(1, 1, 1, 6)), expected)


def test_config_validation():
    with pytest.raises(ArchitectureError, match="position_embedding_type"):
        FlexiBertConfig("bert-tiny", position_embedding_type="rotary")
    with pytest.raises(ArchitectureError, match="vocab_size"):
        FlexiBertConfig("bert-tiny", vocab_size=0)
    config = FlexiBertConfig("bert-mini")
    assert FlexiBertConfig.from_dict(config.to_dict()).arch == named_architecture("bert-mini")


@pytest.mark.parametrize("seed", [0, 1])
def test_flops_match_torch_flop_counter(seed, tiny_hetero):
    archs = [tiny_hetero, named_architecture("bert-mini"), *sample(2, method="lhs", seed=seed)]
    for arch in archs:
        for position in ("relative_key", "absolute"):
            config = FlexiBertConfig(
                arch, vocab_size=512, max_position_embeddings=130, position_embedding_type=position
            )
            model = FlexiBertModel(config).eval()
            counter = FlopCounterMode(display=False)
            # The math backend decomposes SDPA into matmuls that the counter sees on CPU.
            with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
                model(torch.zeros(2, 32, dtype=torch.long))
            report = estimate_costs(
                arch,
                batch_size=2,
                seq_len=32,
                vocab_size=512,
                max_position_embeddings=130,
                relative_positions=position == "relative_key",
            )
            assert report.flops == pytest.approx(counter.get_total_flops(), rel=0.05)
            assert report.parameters == sum(p.numel() for p in model.parameters())


def test_cost_report_breakdown(tiny_hetero):
    report = estimate_costs(tiny_hetero, batch_size=2, seq_len=16)
    kinds = report.by_kind()
    assert {
        "sa_sdp",
        "sa_wma",
        "l_dft",
        "l_dct",
        "c_5",
        "c_9",
        "c_13",
        "feed_forward",
        "projection",
        "qkv",
        "embeddings",
        "pooler",
    } <= set(kinds)
    assert sum(c.flops for c in kinds.values()) == report.flops
    assert len(report.per_layer) == 3
    assert report.to_dict()["total"]["bytes"] == report.bytes > 0
    doubled = estimate_costs(tiny_hetero, batch_size=4, seq_len=16)
    assert doubled.flops == 2 * report.flops


def test_sequence_bases_cache_is_bounded():
    from edgetran.model import modeling

    arch = Architecture.from_dict(
        {"layers": [{"hidden": 16, "heads": ["l_dft", "l_dct"], "head_dim": 8, "ff": [16]}]}
    )
    model = FlexiBertModel(tiny_config(arch)).eval()
    for seq in range(2, 40):
        model(torch.zeros(1, seq, dtype=torch.long))
    assert len(modeling._SEQUENCE_BASES) <= modeling._MAX_CACHED_BASES


def test_cached_bases_made_in_inference_mode_still_train():
    """The profiler runs under inference mode; a model trained later must not inherit
    inference tensors from the sequence-basis cache."""
    import torch

    from edgetran.model import FlexiBertConfig, FlexiBertModel
    from edgetran.space import Architecture, Layer

    arch = Architecture((Layer(16, ("l_dft", "l_dct"), 8, (32,)),))
    model = FlexiBertModel(FlexiBertConfig(architecture=arch.to_dict(), vocab_size=50))
    ids = torch.randint(0, 50, (2, 11))  # a sequence length no other test uses
    with torch.inference_mode():
        model(ids)
    model(ids).last_hidden_state.sum().backward()
