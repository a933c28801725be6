"""``FlexiBertConfig``: a ``transformers`` config that carries an :class:`Architecture`."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from edgetran.errors import ArchitectureError
from edgetran.space import Architecture, named_architecture

POSITION_EMBEDDING_TYPES = ("relative_key", "absolute")


class FlexiBertConfig(PretrainedConfig):
    """Configuration of a heterogeneous FlexiBERT 2.0 encoder.

    Defaults are the reference configuration (``flexibert-gptran.md`` §2): a RoBERTa-sized
    vocabulary, 514 position rows, one token type and relative-key positions for every head.

    Args:
        architecture: an :class:`Architecture`, its JSON dict (either form) or a named
            architecture such as ``"bert-mini"``. Stored in the project's JSON form.
        vocab_size: rows of the word embedding.
        max_position_embeddings: rows of the absolute table; relative keys have ``2·P−1`` rows.
        type_vocab_size: rows of the token-type embedding.
        position_embedding_type: ``"relative_key"`` (reference) or ``"absolute"`` (BERT).
        hidden_dropout_prob: dropout after embeddings, attention output and feed-forward.
        attention_probs_dropout_prob: dropout on attention probabilities.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the normal initialisation of Linear/Embedding weights.
        classifier_dropout: dropout before the classifier (``None``: hidden_dropout_prob).
    """

    model_type = "flexibert"

    def __init__(
        self,
        architecture: Architecture | dict[str, Any] | str = "bert-tiny",
        vocab_size: int = 50265,
        max_position_embeddings: int = 514,
        type_vocab_size: int = 1,
        position_embedding_type: str = "relative_key",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        classifier_dropout: float | None = None,
        pad_token_id: int = 0,
        **kwargs: Any,
    ) -> None:
        arch = _as_architecture(architecture)
        for name, value in (
            ("vocab_size", vocab_size),
            ("max_position_embeddings", max_position_embeddings),
            ("type_vocab_size", type_vocab_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArchitectureError(name, value, "a positive integer")
        if position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ArchitectureError(
                "position_embedding_type",
                position_embedding_type,
                ", ".join(POSITION_EMBEDDING_TYPES),
            )
        self.architecture = arch.to_dict()
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.position_embedding_type = position_embedding_type
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.classifier_dropout = classifier_dropout
        # The reference decoder is untied from the word embedding.
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self._arch = arch

    @property
    def arch(self) -> Architecture:
        """The validated architecture."""
        return self._arch

    @property
    def hidden_size(self) -> int:
        """Hidden size of the last layer (what the pooler and task heads see)."""
        return self._arch.layers[-1].hidden

    @property
    def num_hidden_layers(self) -> int:
        """The number of encoder layers (Hugging Face's name for it)."""
        return self._arch.num_layers

    def check_seq_len(self, seq_len: int) -> None:
        """Raise :class:`ArchitectureError` if inputs of ``seq_len`` tokens would run past the
        position tables (absolute rows, or relative distances of ``2·P−1`` rows)."""
        if seq_len > self.max_position_embeddings:
            raise ArchitectureError(
                "seq_len",
                seq_len,
                f"at most {self.max_position_embeddings} (the model's max_position_embeddings)",
            )

    def to_dict(self) -> dict[str, Any]:
        """The configuration as saved, without the cached architecture object."""
        output = super().to_dict()
        output.pop("_arch", None)
        return output


def _as_architecture(value: Architecture | dict[str, Any] | str) -> Architecture:
    if isinstance(value, Architecture):
        return value
    if isinstance(value, str):
        return named_architecture(value)
    return Architecture.from_dict(value)
