"""Convert a Hugging Face ``BertModel`` into an equivalent FlexiBERT model.

This is how a user starts from a pretrained BERT: the converted model is homogeneous
(``sa_sdp`` heads), uses absolute positions, and gives the same outputs as the original.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from edgetran.errors import EdgeTranError
from edgetran.model.configuration import FlexiBertConfig
from edgetran.model.modeling import FlexiBertModel
from edgetran.space import homogeneous


class HFImportError(EdgeTranError):
    """The source is not a convertible BERT checkpoint."""


def flexibert_config_from_bert(bert: BertConfig) -> FlexiBertConfig:
    """The FlexiBERT configuration that reproduces a Hugging Face BERT configuration."""
    if bert.hidden_act not in ("gelu", "gelu_python"):
        raise HFImportError(f"hidden_act={bert.hidden_act!r} is unsupported; allowed: gelu")
    position_type = getattr(bert, "position_embedding_type", "absolute") or "absolute"
    if position_type != "absolute":
        raise HFImportError(
            f"position_embedding_type={position_type!r}; only absolute is supported"
        )
    arch = homogeneous(
        bert.num_hidden_layers, bert.hidden_size, bert.num_attention_heads, bert.intermediate_size
    )
    return FlexiBertConfig(
        arch,
        vocab_size=bert.vocab_size,
        max_position_embeddings=bert.max_position_embeddings,
        type_vocab_size=bert.type_vocab_size,
        position_embedding_type="absolute",
        hidden_dropout_prob=bert.hidden_dropout_prob,
        attention_probs_dropout_prob=bert.attention_probs_dropout_prob,
        layer_norm_eps=bert.layer_norm_eps,
        initializer_range=bert.initializer_range,
        pad_token_id=bert.pad_token_id if bert.pad_token_id is not None else 0,
    )


def _renamed(name: str) -> str:
    """A ``BertModel`` parameter name → the FlexiBERT name."""
    replacements = (
        (".attention.self.", ".attention."),
        (".attention.output.dense.", ".attention.dense."),
        (".attention.output.LayerNorm.", ".attention.LayerNorm."),
        (".intermediate.dense.", ".feed_forward.intermediate.0."),
        (".output.dense.", ".feed_forward.output."),
        (".output.LayerNorm.", ".feed_forward.LayerNorm."),
    )
    for old, new in replacements:
        if old in name:
            return name.replace(old, new)
    return name


def from_bert(bert: BertModel) -> FlexiBertModel:
    """A FlexiBERT model with the weights of ``bert`` (a ``BertModel``)."""
    model = FlexiBertModel(flexibert_config_from_bert(bert.config))
    state = {_renamed(name): tensor for name, tensor in bert.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith(("position_ids", "token_type_ids"))}
    if bert.pooler is None:
        state.update({f"pooler.{k}": v for k, v in model.pooler.state_dict().items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HFImportError(
            f"weights do not map: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model


def import_hf(source_dir: str | Path, out_dir: str | Path) -> FlexiBertModel:
    """Load a saved ``BertModel`` (or any BERT with a ``bert.`` base) and save it as FlexiBERT."""
    source_dir = Path(source_dir)
    if not (source_dir / "config.json").is_file():
        raise HFImportError(f"{source_dir}: no config.json; expected a saved Hugging Face BERT")
    config = BertConfig.from_pretrained(source_dir)
    if config.model_type != "bert":
        raise HFImportError(f"{source_dir}: model_type={config.model_type!r}; expected 'bert'")
    bert = BertModel.from_pretrained(source_dir, torch_dtype=torch.float32)
    model = from_bert(bert)
    model.save_pretrained(out_dir)
    return model
