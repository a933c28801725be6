"""Tokenised batches: seeded epoch order and MLM masking that a resumed run reproduces exactly.

Batch ``t`` depends only on ``(seed, t)``: the epoch permutation comes from ``(seed, epoch)``
and the mask from ``(seed, t)``, so a run resumed from a checkpoint at step ``t`` sees the very
batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100


class TokenisedTexts:
    """Texts (and optional pairs) tokenised once, padded to ``max_length``.

    Attributes:
        input_ids, attention_mask: ``(N, max_length)`` int64 tensors.
        labels: ``(N,)`` targets or ``None``.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        texts: Sequence[str],
        max_length: int,
        pairs: Sequence[str] | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        encoded = tokenizer(
            list(texts),
            list(pairs) if pairs is not None else None,
            truncation=True,
            max_length=max_length,
            padding="max_length",
            return_tensors="pt",
        )
        self.input_ids = encoded["input_ids"]
        self.attention_mask = encoded["attention_mask"]
        self.labels = None if labels is None else torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.input_ids)

    def typical_width(self, quantile: float = 0.95) -> int:
        """A typical batch width after trimming: the ``quantile`` of the sequence lengths (a
        batch is as wide as its longest row)."""
        lengths = self.attention_mask.sum(dim=1).float()
        return max(1, int(torch.quantile(lengths, quantile)))

    def rows(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        """Row indices of batch ``step`` (epochs are seeded permutations)."""
        start = step * batch_size
        epoch, offset = divmod(start, len(self))
        order = np.random.default_rng([seed, epoch]).permutation(len(self))
        rows = order[offset : offset + batch_size]
        if len(rows) < batch_size:  # wrap into the next epoch
            following = np.random.default_rng([seed, epoch + 1]).permutation(len(self))
            rows = np.concatenate([rows, following[: batch_size - len(rows)]])
        return rows

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The rows, trimmed to their longest sequence: ``input_ids``/``attention_mask`` (B, S)."""
        index = torch.as_tensor(rows)
        mask = self.attention_mask[index]
        width = max(1, int(mask.sum(dim=1).max()))
        out = {"input_ids": self.input_ids[index, :width], "attention_mask": mask[:, :width]}
        if self.labels is not None:
            out["labels"] = self.labels[index]
        return out


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose ``probability`` of the real tokens; of those 80% become
    ``[MASK]``, 10% a random token, 10% stay. Returns ``(masked_ids, labels)``, both (B, S),
    labels ``-100`` where nothing is predicted. At least one token per batch is chosen."""
    candidates = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(list(special_ids)))
    draw = torch.rand(input_ids.shape, generator=generator)
    chosen = candidates & (draw < probability)
    if not chosen.any() and candidates.any():
        chosen.view(-1)[candidates.view(-1).nonzero()[0]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    action = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (action < 0.8)] = mask_id
    random_slots = chosen & (action >= 0.8) & (action < 0.9)
    masked[random_slots] = torch.randint(
        vocab_size, (int(random_slots.sum()),), generator=generator
    )
    return masked, labels
