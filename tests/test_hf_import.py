import torch
from transformers import BertConfig, BertModel

from edgetran.model import FlexiBertModel
from edgetran.model.hf_import import import_hf


def test_import_hf_gives_identical_outputs(tmp_path, run_cli):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    bert = BertModel(config).eval()
    bert.save_pretrained(tmp_path / "bert")
    code, _, err = run_cli("model", "import-hf", tmp_path / "bert", tmp_path / "flexi")
    assert code == 0, err
    flexi = FlexiBertModel.from_pretrained(tmp_path / "flexi").eval()
    assert flexi.config.position_embedding_type == "absolute"
    ids = torch.randint(0, 99, (3, 16))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    types = torch.randint(0, 2, (3, 16))
    with torch.no_grad():
        expected = bert(ids, attention_mask=mask, token_type_ids=types)
        actual = flexi(ids, mask, types)
    assert (expected.last_hidden_state - actual.last_hidden_state).abs().max() <= 1e-4
    assert (expected.pooler_output - actual.pooler_output).abs().max() <= 1e-4


def test_import_hf_rejects_a_missing_directory(tmp_path, run_cli):
    code, _, err = run_cli("model", "import-hf", tmp_path / "nothing", tmp_path / "out")
    assert code == 2 and "no config.json" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_import_hf_python_api(tmp_path):
    bert = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=20,
        )
    )
    bert.save_pretrained(tmp_path / "b")
    model = import_hf(tmp_path / "b", tmp_path / "f")
    assert model.config.arch.layers[0].ops == ("sa_sdp", "sa_sdp")
