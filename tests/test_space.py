import json
import math

import numpy as np
import pytest

from edgetran.errors import ArchitectureError, DesignSpaceError
from edgetran.space import (
    NAMED_ARCHITECTURES,
    REFERENCE_SPACE,
    Architecture,
    DesignSpace,
    Layer,
    named_architecture,
    neighbours,
    random_neighbour,
    sample,
)

BERT_MINI_EMBEDDING = [1, 1, 2, 28, 1, 2, 28, 1, 2, 28, 1, 2, 28] + [0] * 24


def test_reference_space_size_is_computed():
    size = REFERENCE_SPACE.size
    assert isinstance(size, int)
    assert math.isclose(size, 1.68589e88, rel_tol=1e-4)
    assert REFERENCE_SPACE.num_ff_choices == 258
    assert REFERENCE_SPACE.num_attention_choices == 21805
    assert REFERENCE_SPACE.embedding_length == 37


def test_narrowed_space_size_follows_the_formula():
    space = DesignSpace(
        layers=(2,),
        hidden_sizes=(128,),
        head_counts=(2,),
        operations=("sa_sdp",),
        ff_depths=(1,),
        ff_widths=(256, 512),
    )
    assert space.size == (2 * 1 * 1) ** 2


def test_bert_mini_embedding():
    assert REFERENCE_SPACE.encode(named_architecture("bert-mini")) == BERT_MINI_EMBEDDING


def test_decode_example_from_the_specification():
    embedding = [2, 3, 128, 127, 1, 39, 95, 3, 186, 119, 1, 11, 57, 0, 102, 123, 1, 47, 213]
    arch = REFERENCE_SPACE.decode(embedding + [0] * 18)
    first = arch.layers[0]
    assert arch.num_layers == 6
    assert first.hidden == 768 and first.ff == (1024, 1024, 1024)
    assert first.ops == ("sa_wma", "sa_wma", "c_5", "c_5") and first.head_dim == 192


def test_reference_model_embeddings(reference_models):
    for entry in reference_models:
        arch = Architecture.from_model_dict(entry["model_dict"])
        expected = entry["embedding"]
        expected = json.loads(expected) if isinstance(expected, str) else expected
        assert REFERENCE_SPACE.encode(arch) == expected
        assert REFERENCE_SPACE.decode(expected) == arch
        assert arch.to_model_dict() == entry["model_dict"]


def test_protran_embeddings(protran_files):
    for path in protran_files:
        for entry in json.loads(path.read_text()).values():
            arch = Architecture.from_model_dict(entry["model_dict"])
            assert REFERENCE_SPACE.encode(arch) == json.loads(entry["embedding"]), path.name


def test_json_round_trips_and_canonical_hash(tiny_hetero):
    assert Architecture.from_json(tiny_hetero.to_json()) == tiny_hetero
    assert Architecture.from_dict(tiny_hetero.to_model_dict()) == tiny_hetero
    shuffled = Layer(32, ("l_dct", "sa_wma", "l_dft", "sa_sdp"), 8, (64,))
    same = Architecture((shuffled, *tiny_hetero.layers[1:]))
    assert same == tiny_hetero and same.hash == tiny_hetero.hash
    assert shuffled.ops == ("sa_sdp", "sa_wma", "l_dft", "l_dct")
    assert len(tiny_hetero.hash) == 32
    assert tiny_hetero.hash != named_architecture("bert-mini").hash


def test_off_grid_architectures_are_valid_but_not_on_grid():
    grown = {
        "l": 2,
        "o": [["sa_sdp_21"] * 13, ["c_5_64", "l_dft_64"]],
        "h": [256, 128],
        "f": [[896], [1024, 1024, 1024, 256]],
    }
    arch = Architecture.from_model_dict(grown)
    assert arch.layers[0].attention_width == 13 * 21 != arch.layers[0].hidden
    assert not REFERENCE_SPACE.contains(arch)
    embedding = REFERENCE_SPACE.encode(arch)  # nearest on-grid
    snapped = REFERENCE_SPACE.decode(embedding)
    assert snapped == REFERENCE_SPACE.snap(arch)
    assert snapped.layers[0].num_heads == 12 and snapped.layers[0].ff == (1024,)
    assert snapped.layers[1].ff == (1024, 1024, 1024)
    assert REFERENCE_SPACE.contains(snapped)


def test_snap_of_on_grid_is_identity():
    arch = sample(1, method="random", seed=3)[0]
    assert REFERENCE_SPACE.snap(arch) == arch


@pytest.mark.parametrize(
    ("layer", "field", "value"),
    [
        ({"hidden": -5, "heads": ["sa_sdp"], "ff": [64]}, "hidden", -5),
        ({"hidden": 64, "heads": ["sa_xyz"], "ff": [64]}, "heads", "sa_xyz"),
        ({"hidden": 64, "heads": ["c_4"], "ff": [64]}, "heads", "c_4"),
        ({"hidden": 64, "heads": [], "ff": [64]}, "heads", []),
        ({"hidden": 64, "heads": "sa_sdp", "ff": [64]}, "heads", "sa_sdp"),
        ({"hidden": 64, "heads": ["sa_sdp"], "ff": [0]}, "ff", 0),
        ({"hidden": 64, "heads": ["sa_sdp"], "ff": []}, "ff", []),
        ({"hidden": 64, "heads": ["sa_sdp"], "ff": {"width": 64}}, "ff", {"width": 64}),
        ({"hidden": 64, "heads": ["sa_sdp"], "head_dim": 0, "ff": [64]}, "head_dim", 0),
    ],
)
def test_invalid_layers_name_layer_field_value_and_allowed(layer, field, value):
    good = {"hidden": 64, "heads": ["sa_sdp"], "ff": [64]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_dict({"layers": [good, layer]})
    err = info.value
    assert (err.layer, err.field, err.value) == (1, field, value)
    assert "layer 1" in str(err) and "allowed" in str(err)


def test_model_dict_errors():
    with pytest.raises(ArchitectureError, match="exactly l=2"):
        Architecture.from_model_dict({"l": 2, "o": [["sa_sdp_64"]], "h": [64], "f": [[64]]})
    with pytest.raises(ArchitectureError, match="layer 0: o='zz_64'"):
        Architecture.from_model_dict({"l": 1, "o": [["zz_64"]], "h": [64], "f": [[64]]})
    with pytest.raises(ArchitectureError, match="one head dimension"):
        Architecture.from_model_dict(
            {"l": 1, "o": [["sa_sdp_8", "l_dft_16"]], "h": [64], "f": [[64]]}
        )
    with pytest.raises(ArchitectureError, match="field missing"):
        Architecture.from_model_dict({"l": 1, "o": [["sa_sdp_64"]], "h": [64]})


def test_design_space_from_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "space.yaml"
    yaml_file.write_text("layers: [2, 4]\nhidden_sizes: [128]\n")
    space = DesignSpace.from_file(yaml_file)
    assert space.layers == (2, 4) and space.head_counts == REFERENCE_SPACE.head_counts
    json_file = tmp_path / "space.json"
    json_file.write_text(json.dumps(space.to_dict()))
    assert DesignSpace.from_file(json_file) == space
    bad = tmp_path / "bad.yaml"
    bad.write_text("colours: [red]\n")
    with pytest.raises(DesignSpaceError, match="unknown field 'colours'"):
        DesignSpace.from_file(bad)
    with pytest.raises(DesignSpaceError, match="not a positive integer"):
        DesignSpace(hidden_sizes=(128, -1))
    with pytest.raises(DesignSpaceError, match="'sa_foo' is unknown"):
        DesignSpace(operations=("sa_foo",))


@pytest.mark.parametrize("method", ["random", "lhs"])
def test_sampling_is_seeded_and_on_grid(method):
    first = sample(12, method=method, seed=7)
    assert first == sample(12, method=method, seed=7)
    assert first != sample(12, method=method, seed=8)
    assert all(REFERENCE_SPACE.contains(arch) for arch in first)


def test_lhs_draws_narrow_and_wide_halves():
    archs = sample(16, method="lhs", seed=0)
    narrow = [max(layer.num_heads for layer in a.layers) < 8 for a in archs]
    assert narrow == [True] * 8 + [False] * 8


def test_sampling_respects_a_narrowed_space():
    space = DesignSpace(layers=(2,), hidden_sizes=(128,), operations=("sa_sdp", "c_5"))
    for arch in sample(10, method="lhs", seed=1, space=space):
        assert space.contains(arch)
        assert set(op for layer in arch.layers for op in layer.ops) <= {"sa_sdp", "c_5"}


def test_on_grid_neighbours_are_single_mutations_inside_the_space():
    arch = named_architecture("bert-mini")
    result = neighbours(arch)
    assert result and len({a.hash for a in result}) == len(result)
    assert all(REFERENCE_SPACE.contains(a) for a in result)
    assert arch not in result
    assert any(a.num_layers == 6 for a in result) and any(a.num_layers == 2 for a in result)
    changed_op = [
        a
        for a in result
        if a.layers[1:] == arch.layers[1:]
        and a.layers[0].ops.count("sa_sdp") == 3
        and a.layers[0].num_heads == 4
    ]
    assert len(changed_op) == 6  # one head of layer 0 becomes each of the six other ops


def test_free_neighbours_add_one_head_and_keep_d():
    arch = named_architecture("bert-mini")
    result = neighbours(arch, space=None)
    grown = [a for a in result if a.layers[0].num_heads == 5]
    assert grown and all(a.layers[0].head_dim == 64 for a in grown)
    rng = np.random.default_rng(0)
    assert random_neighbour(arch, rng) in neighbours(arch)


def test_named_architectures():
    base = NAMED_ARCHITECTURES["bert-base"]
    assert base.num_layers == 12 and base.layers[0].ops == ("sa_sdp",) * 12
    assert base.layers[0].head_dim == 64 and base.layers[0].ff == (3072,)
    assert named_architecture("bert-tiny").hidden_sizes == (128, 128)
