import pytest
import torch

from edgetran.model import FlexiBertConfig, FlexiBertForMaskedLM, FlexiBertModel
from edgetran.model.transfer import match_heads, transfer_weights
from edgetran.space import Architecture, Layer, named_architecture, neighbours


def build(cls, arch, seed, **kwargs):
    torch.manual_seed(seed)
    return cls(FlexiBertConfig(arch, vocab_size=99, max_position_embeddings=64, **kwargs)).eval()


@pytest.mark.parametrize("mode", ["ordered", "random_projection"])
def test_same_architecture_transfers_everything(tiny_hetero, mode):
    source = build(FlexiBertForMaskedLM, tiny_hetero, 0)
    target = build(FlexiBertForMaskedLM, tiny_hetero, 1)
    assert transfer_weights(source, target, mode=mode) == 1.0
    ids = torch.randint(0, 99, (2, 10))
    torch.testing.assert_close(source(ids).logits, target(ids).logits, atol=0, rtol=0)


def test_bert_base_plus_one_wma_head():
    base = named_architecture("bert-base")
    first = base.layers[0]
    grown = Architecture((first.replace(ops=(*first.ops, "sa_wma")), *base.layers[1:]))
    torch.manual_seed(0)
    source = FlexiBertModel(FlexiBertConfig(base))
    target = FlexiBertModel(FlexiBertConfig(grown))
    share = transfer_weights(source, target)
    assert 0.99 < share < 1.0
    # Every other layer, and the sdp heads of layer 0, are identical.
    for name in ("query", "key", "value"):
        new = getattr(target.encoder.layer[0].attention, name).weight[: 12 * 64]
        old = getattr(source.encoder.layer[0].attention, name).weight
        torch.testing.assert_close(new, old, atol=0, rtol=0)
    torch.testing.assert_close(target.pooler.dense.weight, source.pooler.dense.weight)


def test_heads_match_by_operation_then_family():
    target = Layer(64, ("sa_sdp", "sa_wma", "l_dct", "c_9"), 16, (64,))
    source = Layer(64, ("sa_sdp", "sa_sdp", "l_dft", "c_5"), 16, (64,))
    # sa_sdp ← sa_sdp; sa_wma ← the spare sa_sdp; l_dct ← l_dft; c_9 ← c_5.
    assert match_heads(target, source) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    inserted = Layer(64, ("sa_sdp", "sa_wma", "c_5"), 16, (64,))
    assert match_heads(inserted, Layer(64, ("sa_sdp", "c_5"), 16, (64,))) == [(0, 0), (2, 1)]


def test_qkv_slices_follow_each_models_head_dim():
    source_arch = Architecture((Layer(64, ("sa_sdp",) * 4, 16, (64,)),))
    target_arch = Architecture((Layer(64, ("sa_sdp",) * 2, 32, (64,)),))
    source = build(FlexiBertModel, source_arch, 0)
    target = build(FlexiBertModel, target_arch, 1)
    transfer_weights(source, target, mode="ordered")
    q_target = target.encoder.layer[0].attention.query.weight
    q_source = source.encoder.layer[0].attention.query.weight
    torch.testing.assert_close(q_target[32:48], q_source[16:32], atol=0, rtol=0)


def test_random_projection_is_seeded(tiny_hetero):
    wider = Architecture((tiny_hetero.layers[0].replace(hidden=40), *tiny_hetero.layers[1:]))
    source = build(FlexiBertModel, tiny_hetero, 0)
    results = []
    for _ in range(2):
        target = build(FlexiBertModel, wider, 1)
        transfer_weights(source, target, mode="random_projection", seed=3)
        results.append(target.embeddings.word_embeddings.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], atol=0, rtol=0)
    ordered = build(FlexiBertModel, wider, 1)
    transfer_weights(source, ordered, mode="ordered")
    assert not torch.equal(ordered.embeddings.word_embeddings.weight, results[0])


def test_every_neighbour_receives_weights(tiny_hetero):
    source = build(FlexiBertForMaskedLM, tiny_hetero, 0)
    for arch in neighbours(tiny_hetero, space=None)[::9]:
        target = build(FlexiBertForMaskedLM, arch, 1)
        share = transfer_weights(source, target)
        assert 0.0 < share <= 1.0  # a 4096-wide FF layer can dwarf what is shared
        assert torch.isfinite(target(torch.randint(0, 99, (1, 8))).logits).all()


def test_invalid_mode(tiny_hetero):
    model = build(FlexiBertModel, tiny_hetero, 0)
    with pytest.raises(ValueError, match="allowed: ordered, random_projection"):
        transfer_weights(model, model, mode="copy")
