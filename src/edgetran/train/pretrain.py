"""Masked-language-model pretraining of a FlexiBERT model, checkpointed and resumable.

As in the reference (``flexibert-gptran.md`` §5): AdamW (β2 0.99, ε 1e-6, weight decay 0.01),
linear warm-up then linear decay, gradient norm clipped at 1.0, 15% BERT masking — scaled down
by a step budget. A model may start by weight transfer from an already-trained neighbour.

The run writes ``OUT/checkpoint.pt`` every ``checkpoint_every`` steps (atomically: a crash
leaves the previous one) and, when done, ``save_pretrained`` files, the tokenizer and
``OUT/pretrain.json``. Calling :func:`pretrain` again on the same ``OUT`` resumes from the
checkpoint, or returns the finished result.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR
from transformers import PreTrainedTokenizerBase

from edgetran.errors import EdgeTranError
from edgetran.model import FlexiBertConfig, FlexiBertForMaskedLM
from edgetran.model.transfer import transfer_weights
from edgetran.seeding import torch_seeded
from edgetran.space import Architecture
from edgetran.train.data import TokenisedTexts, mask_tokens

CHECKPOINT = "checkpoint.pt"
RESULT = "pretrain.json"
#: The final loss is the mean of the last LOSS_WINDOW steps (a single step is noisy).
LOSS_WINDOW = 10


class TrainingError(EdgeTranError, ValueError):
    """Training settings or inputs are unusable."""


@dataclass(frozen=True)
class PretrainSettings:
    """MLM pretraining settings (defaults: reference optimiser, short budget). ``steps=0``
    only initialises the model (from a neighbour where one is given).

    ``start_step`` continues a schedule: the run is steps ``start_step … start_step + steps``
    of a linear warm-up (``round(warmup_ratio × steps)`` steps from step 0) and decay to zero at
    ``start_step + steps``, as the reference's grow-and-prune children continued their parent's
    global step (reference §6). The optimiser's moments still start fresh, as there.
    """

    steps: int = 100
    batch_size: int = 32
    max_length: int = 64
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-6
    max_grad_norm: float = 1.0
    mlm_probability: float = 0.15
    checkpoint_every: int = 50
    seed: int = 0
    start_step: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "start_step"):
            if getattr(self, name) < 0:
                raise TrainingError(f"{name}={getattr(self, name)}; expected an integer ≥ 0")
        for name in ("batch_size", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name}={getattr(self, name)}; expected an integer ≥ 1")
        if self.learning_rate <= 0:
            raise TrainingError(f"learning_rate={self.learning_rate}; expected > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainingError(f"warmup_ratio={self.warmup_ratio}; expected a value in [0, 1)")
        if not 0 < self.mlm_probability < 1:
            raise TrainingError(f"mlm_probability={self.mlm_probability}; expected (0, 1)")
        object.__setattr__(self, "betas", tuple(self.betas))


@dataclass
class PretrainResult:
    """What a pretraining run produced (``OUT/pretrain.json``); ``loss`` is ``None`` after
    zero steps."""

    hash: str
    steps: int
    loss: float | None
    losses: list[float]
    seconds: float
    tokenizer: str
    transferred_from: str | None = None
    transferred_share: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return asdict(self)


def max_positions(max_length: int) -> int:
    """Positions of a model trained on texts of ``max_length`` tokens: the longest input it
    takes (at least 64, as growing and pruning need)."""
    return max(max_length + 2, 64)


def build_mlm_model(arch: Architecture, tokenizer: PreTrainedTokenizerBase, max_length: int):
    """A randomly initialised MLM model of ``arch`` sized for ``tokenizer`` and ``max_length``."""
    config = FlexiBertConfig(
        architecture=arch.to_dict(),
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions(max_length),
        pad_token_id=tokenizer.pad_token_id,
    )
    return FlexiBertForMaskedLM(config)


def initial_model(
    arch: Architecture,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    init_from: str | Path | None = None,
    seed: int = 0,
) -> tuple[FlexiBertForMaskedLM, str | None, float]:
    """A fresh MLM model of ``arch`` (seeded), with ``init_from``'s weights transferred where
    given: ``(model, source hash or None, transferred share)``."""
    with torch_seeded(seed):
        model = build_mlm_model(arch, tokenizer, max_length)
    source, share = _transfer(model, init_from, seed)
    return model, source, share


def pretrain(
    arch: Architecture,
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    tokenizer_id: str,
    out: str | Path,
    settings: PretrainSettings = PretrainSettings(),
    init_from: str | Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
    device: str = "cpu",
) -> PretrainResult:
    """Pretrain ``arch`` on ``texts``; resume or reuse what ``out`` already holds.

    Args:
        init_from: a pretrained FlexiBERT directory to transfer weights from (its hash and the
            share of transferred weights are recorded).
        on_step: called after every optimiser step with ``(step, loss)`` (progress bars).
        device: where to train (``cpu``, ``cuda``, ``cuda:1`` …); checkpoints are portable.
    """
    out = Path(out)
    signature = _signature(arch, tokenizer_id, settings)
    finished = _finished(out, signature)
    if finished is not None:
        return finished
    if settings.steps and not texts:
        raise TrainingError("no pretraining text")
    out.mkdir(parents=True, exist_ok=True)
    data = TokenisedTexts(tokenizer, texts, settings.max_length) if settings.steps else None
    with torch_seeded(settings.seed):  # dropout; the state is restored from a checkpoint on resume
        model = build_mlm_model(arch, tokenizer, settings.max_length)
        source, share = _transfer(model, init_from, settings.seed)
        model.to(device)
        optimizer, scheduler = _optimiser(model, settings)
        state = _load_checkpoint(out, signature)
        start, losses, seconds = 0, [], 0.0
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            start, losses, seconds = state["step"], state["losses"], state["seconds"]
            source, share = state["transferred_from"], state["transferred_share"]
        special = tokenizer.all_special_ids
        model.train()
        began = time.perf_counter() - seconds
        for step in range(start, settings.steps):
            batch = data.batch(data.rows(step, settings.batch_size, settings.seed))
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
            ids, labels = mask_tokens(
                batch["input_ids"], batch["attention_mask"], special,
                tokenizer.mask_token_id, len(tokenizer), generator, settings.mlm_probability,
            )  # fmt: skip
            loss = mlm_loss(
                model, ids.to(device), batch["attention_mask"].to(device), labels.to(device)
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                model.parameters(), settings.max_grad_norm, foreach=True
            )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise TrainingError(f"pretraining diverged at step {step + 1} (loss {loss})")
            done = step + 1
            if done % settings.checkpoint_every == 0 and done < settings.steps:
                _save_checkpoint(out, signature, model, optimizer, scheduler, done, losses,
                                 time.perf_counter() - began, source, share)  # fmt: skip
            if on_step is not None:
                on_step(done, losses[-1])
    result = PretrainResult(
        hash=arch.hash,
        steps=settings.steps,
        loss=float(np.mean(losses[-LOSS_WINDOW:])) if losses else None,
        losses=losses,
        seconds=time.perf_counter() - began,
        tokenizer=tokenizer_id,
        transferred_from=source,
        transferred_share=share,
        settings=asdict(settings),
    )
    model.cpu().save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_json(out / RESULT, {**result.to_dict(), "signature": signature})
    (out / CHECKPOINT).unlink(missing_ok=True)
    return result


def mlm_loss(model: FlexiBertForMaskedLM, ids, attention_mask, labels) -> torch.Tensor:
    """Cross-entropy on the masked positions only: the vocabulary projection of the other
    ~85% of positions would cost more than the encoder for small models."""
    hidden = model.flexibert(ids, attention_mask).last_hidden_state  # (B, S, H)
    chosen = labels != -100
    logits = model.lm_head(hidden[chosen])  # (M, V)
    return F.cross_entropy(logits, labels[chosen])


def mlm_eval_loss(
    model: FlexiBertForMaskedLM,
    data: TokenisedTexts,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Mean masked-LM loss over ``data`` with a fixed mask (for comparing checkpoints)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.batch(np.arange(start, min(start + batch_size, len(data))))
            generator = torch.Generator().manual_seed(seed + start)
            ids, labels = mask_tokens(
                batch["input_ids"], batch["attention_mask"], tokenizer.all_special_ids,
                tokenizer.mask_token_id, len(tokenizer), generator,
            )  # fmt: skip
            n = int((labels != -100).sum())
            total += float(mlm_loss(model, ids, batch["attention_mask"], labels)) * n
            count += n
    model.train()
    return total / max(count, 1)


def _transfer(model, init_from, seed) -> tuple[str | None, float]:
    if init_from is None:
        return None, 0.0
    source = FlexiBertForMaskedLM.from_pretrained(init_from)
    share = transfer_weights(source, model, seed=seed)
    return source.config.arch.hash, share


def _optimiser(model, settings: PretrainSettings):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "LayerNorm" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if not (p.ndim > 1 and "LayerNorm" not in n)
    ]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
        betas=settings.betas,
        eps=settings.eps,
        fused=True,  # one kernel over every tensor (as fine-tuning's)
    )
    return optimizer, _linear_schedule(optimizer, settings)


def _linear_schedule(optimizer, settings: PretrainSettings) -> LambdaLR:
    """Linear warm-up then linear decay to zero at ``start_step + steps``, entered at
    ``start_step`` (transformers' linear schedule, shifted)."""
    warmup = round(settings.warmup_ratio * settings.steps)
    end = settings.start_step + settings.steps

    def factor(step: int) -> float:
        at = settings.start_step + step
        if at < warmup:
            return at / warmup
        return max(0.0, (end - at) / max(1, end - warmup))

    return LambdaLR(optimizer, factor)


def _signature(arch: Architecture, tokenizer_id: str, settings: PretrainSettings) -> dict:
    """What a finished run or checkpoint must match to be reused. ``start_step`` joins it only
    when set, so runs saved before it existed stay valid."""
    recorded = asdict(settings)
    if not settings.start_step:
        del recorded["start_step"]
    return {"hash": arch.hash, "tokenizer": tokenizer_id, "settings": recorded}


def holds_pretraining(out: str | Path) -> bool:
    """Whether ``out`` holds a pretraining run, finished or checkpointed: :func:`pretrain`
    resumes or reuses it (or, of another architecture or settings, refuses it)."""
    return (Path(out) / RESULT).is_file() or (Path(out) / CHECKPOINT).is_file()


def _finished(out: Path, signature: dict) -> PretrainResult | None:
    path = out / RESULT
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    if payload.pop("signature", None) != json.loads(json.dumps(signature)):
        raise TrainingError(
            f"{out} holds a finished pretraining run of another architecture or settings; "
            "choose another --out"
        )
    return PretrainResult(**payload)


def _load_checkpoint(out: Path, signature: dict) -> dict | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False, map_location="cpu")
    if state["signature"] != signature:
        raise TrainingError(
            f"{path} belongs to another architecture or settings; "
            "remove it or choose another --out"
        )
    return state


def _save_checkpoint(out, signature, model, optimizer, scheduler, step, losses, seconds,
                     source, share) -> None:  # fmt: skip
    state = {
        "signature": signature,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "losses": losses,
        "seconds": seconds,
        "transferred_from": source,
        "transferred_share": share,
    }
    partial = out / (CHECKPOINT + ".partial")
    torch.save(state, partial)
    os.replace(partial, out / CHECKPOINT)


def _write_json(path: Path, payload: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload, indent=1))
    os.replace(partial, path)
