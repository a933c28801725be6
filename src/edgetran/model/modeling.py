"""The heterogeneous FlexiBERT 2.0 encoder (``flexibert-gptran.md`` §2), in one file.

Shapes: ``B`` batch, ``S`` sequence, ``h`` hidden size of the layer, ``n`` heads, ``d`` head
dimension, ``g`` heads of one operation, ``k`` convolution kernel, ``V`` vocabulary.

Heads are kept in canonical order, so the heads of one operation form one contiguous group
and are computed together. Every head first mixes tokens with attention probabilities

    P = softmax((s + rel) / √d + mask),   s = q·k (sdp), (qW)·k (wma), 0 (l_*, c_*)

where ``rel`` is the relative-key score (all heads, unless positions are absolute). ``sa`` heads
output ``P·V`` (the intended output, not the reference's zeroed one); ``l_dft`` adds
``Re(FFT_seq(FFT_d(V)))``, ``l_dct`` an unnormalised 2-D DCT-II of ``V``, both as matmuls
against basis matrices so that they export and run on every runtime; ``c_k`` adds a ConvBERT
dynamic span-based convolution.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

from edgetran.model.configuration import FlexiBertConfig
from edgetran.space import Layer
from edgetran.space.costs import check_parameter_memory
from edgetran.space.ops import conv_kernel

# The reference (HF BERT) additive mask value; finite, so an all-padding row stays finite.
MASK_VALUE = -10000.0


# -- basis matrices for the DFT and DCT heads --------------------------------------------------
def fourier_basis(
    n: int, dtype: torch.dtype = torch.float32, device=None, *, work_dtype=torch.float64
) -> torch.Tensor:
    """``(2, n, n)``: cos and sin of ``2π·jk/n`` (the real and −imaginary parts of the DFT).

    ``work_dtype`` is the precision of the cosines; float32 stays within 1e-6 of float64 (the
    angles are reduced in integers), which exported graphs need: LiteRT has no float64 ``cos``.
    """
    idx = torch.arange(n, dtype=torch.int64, device=device)
    # Reduce jk mod n in integers so the angle is exact for long sequences.
    angle = (torch.outer(idx, idx) % n).to(work_dtype) * (2 * math.pi / n)
    return torch.stack((torch.cos(angle), torch.sin(angle))).to(dtype)


def dct_basis(
    n: int, dtype: torch.dtype = torch.float32, device=None, *, work_dtype=torch.float64
) -> torch.Tensor:
    """``(n, n)``: the unnormalised DCT-II matrix, ``D[k, m] = 2·cos(πk(2m+1)/2n)``;
    ``work_dtype`` as in :func:`fourier_basis`."""
    k = torch.arange(n, dtype=torch.int64, device=device)
    # cos has a period of 4n steps of π/2n: reduce k(2m+1) in integers, as above.
    angle = (torch.outer(k, 2 * k + 1) % (4 * n)).to(work_dtype) * (math.pi / (2 * n))
    return (2 * torch.cos(angle)).to(dtype)


# A few recent sizes: training with dynamic padding sees many lengths, and a 512-token DFT
# basis alone is 2 MB.
_SEQUENCE_BASES: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_MAX_CACHED_BASES = 16


def _sequence_basis(kind: str, n: int, like: torch.Tensor) -> torch.Tensor:
    """The sequence-axis basis for ``n`` tokens, cached per size in eager mode.

    Under tracing or export (fake or proxy tensors) it is built inline from ``arange`` so that
    no traced value leaks into the cache, and in float32 so that every runtime can run it.
    """
    build = fourier_basis if kind == "dft" else dct_basis
    if type(like) is not torch.Tensor or torch.jit.is_tracing():
        return build(n, like.dtype, like.device, work_dtype=torch.float32)
    key = (kind, n, like.dtype, like.device)
    if key in _SEQUENCE_BASES:
        _SEQUENCE_BASES.move_to_end(key)
    else:
        # Built outside inference mode: a basis first made under `torch.inference_mode()` (the
        # profiler) would otherwise break any later training step that reuses it.
        with torch.inference_mode(False):
            _SEQUENCE_BASES[key] = build(n, like.dtype, like.device)
        if len(_SEQUENCE_BASES) > _MAX_CACHED_BASES:
            _SEQUENCE_BASES.popitem(last=False)
    return _SEQUENCE_BASES[key]


# -- embeddings --------------------------------------------------------------------------------
class FlexiBertEmbeddings(nn.Module):
    """Word + token-type (+ absolute position) embeddings, LayerNorm, dropout → ``(B, S, h0)``.

    The absolute table exists for every model (as in the reference) but is only added when
    ``position_embedding_type == "absolute"``.
    """

    def __init__(self, config: FlexiBertConfig) -> None:
        super().__init__()
        hidden = config.arch.layers[0].hidden
        self.word_embeddings = nn.Embedding(config.vocab_size, hidden, config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.absolute = config.position_embedding_type == "absolute"

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Word, position and token-type embeddings, normalised → ``(B, T, h_0)``."""
        x = self.word_embeddings(input_ids)
        if token_type_ids is not None:
            x = x + self.token_type_embeddings(token_type_ids)
        else:
            x = x + self.token_type_embeddings.weight[0]
        if self.absolute:
            x = x + self.position_embeddings.weight[: input_ids.shape[1]]
        return self.dropout(self.LayerNorm(x))


# -- attention heads ---------------------------------------------------------------------------
class ConvHeads(nn.Module):
    """``g`` ConvBERT dynamic span-based convolution heads of kernel ``k`` and dimension ``d``.

    Per head: ``a = SepConv(K) ⊙ Q``; a softmax over ``k`` of ``Linear(d→k)(a)`` weighs a window
    of ``k`` neighbouring rows of ``Linear(d→d)(V)``.
    """

    def __init__(self, num_heads: int, head_dim: int, kernel: int) -> None:
        super().__init__()
        g, d, k = num_heads, head_dim, kernel
        self.num_heads, self.head_dim, self.kernel = g, d, k
        # Depthwise over every channel of every head, then a pointwise map per head.
        self.depthwise = nn.Conv1d(g * d, g * d, k, padding=k // 2, groups=g * d, bias=False)
        self.pointwise = nn.Conv1d(g * d, g * d, 1, groups=g, bias=False)
        self.conv_bias = nn.Parameter(torch.zeros(g, d))
        self.kernel_weight = nn.Parameter(torch.empty(g, k, d))
        self.kernel_bias = nn.Parameter(torch.zeros(g, k))
        self.out_weight = nn.Parameter(torch.empty(g, d, d))
        self.out_bias = nn.Parameter(torch.zeros(g, d))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k, v``: ``(B, g, S, d)`` → ``(B, g, S, d)``."""
        B, g, S, d = k.shape
        channels = k.transpose(2, 3).reshape(B, g * d, S)  # (B, g·d, S)
        conv = self.pointwise(self.depthwise(channels)).view(B, g, d, S).transpose(2, 3)
        attended = (conv + self.conv_bias[:, None, :]) * q  # (B, g, S, d)
        logits = torch.einsum("bgsd,gkd->bgsk", attended, self.kernel_weight)
        weights = torch.softmax(logits + self.kernel_bias[:, None, :], dim=-1)  # (B, g, S, k)
        u = torch.einsum("bgsd,ged->bgse", v, self.out_weight) + self.out_bias[:, None, :]
        pad = (self.kernel - 1) // 2
        padded = F.pad(u, (0, 0, pad, pad))  # (B, g, S + k − 1, d)
        # Σ_t weights[..., t] · (row s + t − pad): k multiply-adds of shifted views, 3× faster
        # to train on CPU than stacking the k windows into a (B, g, S, d, k) tensor, and
        # plain slices and products for every exporter.
        out = padded[:, :, :S] * weights[..., :1]
        for t in range(1, self.kernel):
            out = out + padded[:, :, t : t + S] * weights[..., t : t + 1]
        return out  # (B, g, S, d)


class FlexiBertAttention(nn.Module):
    """All heads of one layer, the output projection, residual and post-LayerNorm."""

    def __init__(self, layer: Layer, config: FlexiBertConfig) -> None:
        super().__init__()
        h, n, d = layer.hidden, layer.num_heads, layer.head_dim
        self.num_heads, self.head_dim = n, d
        self.query = nn.Linear(h, n * d)
        self.key = nn.Linear(h, n * d)
        self.value = nn.Linear(h, n * d)
        self.groups: list[tuple[str, int, int]] = []  # (op, first head, end head)
        for j, op in enumerate(layer.ops):
            if self.groups and self.groups[-1][0] == op:
                self.groups[-1] = (op, self.groups[-1][1], j + 1)
            else:
                self.groups.append((op, j, j + 1))
        counts = {op: end - start for op, start, end in self.groups}
        self.max_positions = config.max_position_embeddings
        self.relative = config.position_embedding_type == "relative_key"
        if self.relative:
            self.distance_embedding = nn.Embedding(2 * self.max_positions - 1, d)
        if "sa_wma" in counts:
            self.wma = nn.Parameter(torch.empty(counts["sa_wma"], d, d))  # one W per wma head
        if "l_dft" in counts:
            self.register_buffer("dft_basis", fourier_basis(d), persistent=False)
        if "l_dct" in counts:
            self.register_buffer("dct_basis", dct_basis(d), persistent=False)
        self.conv = nn.ModuleDict(
            {op: ConvHeads(counts[op], d, conv_kernel(op)) for op in counts if op.startswith("c_")}
        )
        self.attention_dropout = config.attention_probs_dropout_prob
        self.dense = nn.Linear(n * d, h)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        return x.view(B, S, self.num_heads, self.head_dim).transpose(1, 2)  # (B, n, S, d)

    def _relative_scores(self, q: torch.Tensor) -> torch.Tensor:
        """``rel[b, n, i, j] = q_i · R[i − j + P − 1]`` → ``(B, n, S, S)``."""
        S = q.shape[2]
        position = torch.arange(S, device=q.device)
        distance = position[:, None] - position[None, :] + self.max_positions - 1
        table = self.distance_embedding(distance).to(q.dtype)  # (S, S, d)
        return torch.einsum("bnld,lrd->bnlr", q, table)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, S, h)``; ``mask``: additive ``(B, 1, 1, S)`` → ``(B, S, h)``."""
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        bias = mask  # added to the scaled scores: (B, 1, 1, S) or (B, n, S, S)
        if self.relative:
            bias = self._relative_scores(q) / math.sqrt(self.head_dim) + mask
        p = self.attention_dropout if self.training else 0.0
        outputs = []
        for op, start, end in self.groups:
            qg, kg, vg = q[:, start:end], k[:, start:end], v[:, start:end]
            bg = bias[:, start:end] if self.relative else bias
            if op in ("sa_sdp", "sa_wma"):
                if op == "sa_wma":
                    qg = torch.einsum("bgsd,gde->bgse", qg, self.wma)
                outputs.append(F.scaled_dot_product_attention(qg, kg, vg, bg, dropout_p=p))
            else:
                outputs.append(self._mix_tokens(bg, vg, p) + self._head_term(op, qg, kg, vg))
        # cat even a single group: it fixes the layout of SDPA's CPU output, whose strides
        # differ between eager and the ONNX exporter's fake tensors.
        context = torch.cat(outputs, dim=1)  # (B, n, S, d)
        B, _, S, _ = context.shape
        context = context.transpose(1, 2).reshape(B, S, -1)  # (B, S, n·d)
        return self.LayerNorm(self.dropout(self.dense(context)) + x)

    def _mix_tokens(self, bias: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
        """``softmax(bias)·V`` for heads whose raw score is 0 → ``(B, g, S, d)``."""
        probs = F.dropout(torch.softmax(bias, dim=-1), p, self.training)
        if probs.shape[-2] == 1:
            # Absolute positions: one (B, 1, 1, S) row for every query and head. A weighted
            # sum, not a matmul: LiteRT's converter refuses that batch matmul at batch 1.
            return (probs.transpose(-1, -2) * v).sum(dim=-2, keepdim=True).expand_as(v)
        return probs @ v

    def _head_term(self, op: str, q, k, v) -> torch.Tensor:
        S = v.shape[2]
        if op == "l_dft":
            cos_d, sin_d = self.dft_basis.to(v.dtype)
            cos_s, sin_s = _sequence_basis("dft", S, v)
            return cos_s @ (v @ cos_d) - sin_s @ (v @ sin_d)  # Re(F_S · V · F_d)
        if op == "l_dct":
            return _sequence_basis("dct", S, v) @ (v @ self.dct_basis.to(v.dtype).T)
        return self.conv[op](q, k, v)


class FlexiBertFeedForward(nn.Module):
    """``Linear(h→f0), GELU, …, Linear(f_last→h)``, dropout, residual, post-LayerNorm."""

    def __init__(self, layer: Layer, config: FlexiBertConfig) -> None:
        super().__init__()
        widths = (layer.hidden, *layer.ff)
        self.intermediate = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.output = nn.Linear(layer.ff[-1], layer.hidden)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(layer.hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward stack with its residual and normalisation."""
        y = x
        for linear in self.intermediate:
            y = F.gelu(linear(y))
        return self.LayerNorm(self.dropout(self.output(y)) + x)


class FlexiBertLayer(nn.Module):
    """Attention, feed-forward and, when the next layer is wider or narrower, a projection."""

    def __init__(self, layer: Layer, next_hidden: int | None, config: FlexiBertConfig) -> None:
        super().__init__()
        self.attention = FlexiBertAttention(layer, config)
        self.feed_forward = FlexiBertFeedForward(layer, config)
        needs_projection = next_hidden is not None and next_hidden != layer.hidden
        self.projection = nn.Linear(layer.hidden, next_hidden) if needs_projection else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention, feed-forward, then the projection to the next layer's width."""
        x = self.feed_forward(self.attention(x, mask))
        return self.projection(x) if self.projection is not None else x


class FlexiBertEncoder(nn.Module):
    """The encoder layers in order, each projecting to the next one's hidden size."""

    def __init__(self, config: FlexiBertConfig) -> None:
        super().__init__()
        layers = config.arch.layers
        nexts = [layer.hidden for layer in layers[1:]] + [None]
        self.layer = nn.ModuleList(
            FlexiBertLayer(layer, nxt, config) for layer, nxt in zip(layers, nexts, strict=True)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Every layer in turn → the last layer's hidden states."""
        for layer in self.layer:
            x = layer(x, mask)
        return x


class FlexiBertPooler(nn.Module):
    """``tanh(Linear(h_L→h_L))`` of the first token → ``(B, h_L)``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled first token."""
        return torch.tanh(self.dense(x[:, 0]))


# -- pretrained-model classes -----------------------------------------------------------------
class FlexiBertPreTrainedModel(PreTrainedModel):
    """The base of every FlexiBERT model: its configuration class and weight initialisation."""

    config_class = FlexiBertConfig
    base_model_prefix = "flexibert"
    _no_split_modules: ClassVar[list[str]] = ["FlexiBertEmbeddings", "FlexiBertLayer"]

    def __init__(self, config: FlexiBertConfig, *args, **kwargs) -> None:
        # Refuse before allocating: an absurd size would otherwise fail deep in the allocator.
        check_parameter_memory(
            config.arch,
            vocab_size=config.vocab_size,
            max_position_embeddings=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            relative_positions=config.position_embedding_type == "relative_key",
        )
        super().__init__(config, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, ConvHeads):
            init.normal_(module.depthwise.weight, mean=0.0, std=std)
            init.normal_(module.pointwise.weight, mean=0.0, std=std)
            init.normal_(module.kernel_weight, mean=0.0, std=std)
            init.normal_(module.out_weight, mean=0.0, std=std)
            for bias in (module.conv_bias, module.kernel_bias, module.out_bias):
                init.zeros_(bias)
        elif isinstance(module, FlexiBertAttention):
            if hasattr(module, "wma"):
                init.uniform_(module.wma, -0.1, 0.1)
            # Non-persistent buffers are not in the checkpoint: rebuild them after loading.
            if hasattr(module, "dft_basis"):
                init.copy_(module.dft_basis, fourier_basis(module.head_dim))
            if hasattr(module, "dct_basis"):
                init.copy_(module.dct_basis, dct_basis(module.head_dim))
        elif isinstance(module, FlexiBertLMHead):
            init.zeros_(module.bias)


def _additive_mask(
    attention_mask: torch.Tensor | None, input_ids: torch.Tensor, dtype
) -> torch.Tensor:
    """``(B, S)`` of 1 (keep) / 0 (pad) → additive ``(B, 1, 1, S)`` of 0 / −10000."""
    if attention_mask is None:
        return torch.zeros(input_ids.shape[0], 1, 1, input_ids.shape[1], dtype=dtype)
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * MASK_VALUE


class FlexiBertModel(FlexiBertPreTrainedModel):
    """The encoder: ``input_ids (B, S)`` → ``last_hidden_state (B, S, h_L)``, ``pooler_output``."""

    def __init__(self, config: FlexiBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = FlexiBertEmbeddings(config)
        self.encoder = FlexiBertEncoder(config)
        self.pooler = FlexiBertPooler(config.hidden_size) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        """The word embeddings (the Hugging Face accessor)."""
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Replace the word embeddings (the Hugging Face accessor)."""
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """The encoder's hidden states and, with a pooler, the pooled first token."""
        x = self.embeddings(input_ids, token_type_ids)
        x = self.encoder(x, _additive_mask(attention_mask, input_ids, x.dtype).to(x.device))
        pooled = self.pooler(x) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled)


class FlexiBertLMHead(nn.Module):
    """``Linear(h→h)``, GELU, LayerNorm, untied decoder ``Linear(h→V)`` + bias → ``(B, S, V)``."""

    def __init__(self, config: FlexiBertConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(hidden, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of each token."""
        return self.decoder(self.LayerNorm(F.gelu(self.dense(x)))) + self.bias


class FlexiBertForMaskedLM(FlexiBertPreTrainedModel):
    """Masked-language-model pretraining head; ``labels`` of −100 are ignored."""

    def __init__(self, config: FlexiBertConfig) -> None:
        super().__init__(config)
        self.flexibert = FlexiBertModel(config, add_pooling_layer=False)
        self.lm_head = FlexiBertLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        """The vocabulary decoder (the Hugging Face accessor)."""
        return self.lm_head.decoder

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """Vocabulary logits, and the MLM loss when ``labels`` are given."""
        hidden = self.flexibert(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits)


class FlexiBertForSequenceClassification(FlexiBertPreTrainedModel):
    """Pooler, dropout, ``Linear(h→num_labels)``; MSE when ``num_labels == 1``, else CE."""

    def __init__(self, config: FlexiBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.flexibert = FlexiBertModel(config)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Class logits (or a score), and the loss when ``labels`` are given."""
        pooled = self.flexibert(input_ids, attention_mask, token_type_ids).pooler_output
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
