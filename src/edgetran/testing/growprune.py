"""The contract check of grow-and-prune modes, and the tiny parent it runs them on."""

from __future__ import annotations

import json

import numpy as np
import torch

from edgetran.growprune.modes import Mode, Proposal
from edgetran.model import FlexiBertForMaskedLM, build_model
from edgetran.model.transfer import transfer_weights
from edgetran.space import Architecture, Layer
from edgetran.space.costs import count_parameters
from edgetran.testing._contract import Clauses, is_number


def tiny_parent(seed: int = 0) -> FlexiBertForMaskedLM:
    """A two-layer MLM model (hidden 32 and 64, so with a projection) with every family of
    head (sa, wma, l, c) and FF stacks of depth 1 and 2, with seeded random weights."""
    arch = Architecture(
        (
            Layer(32, ("sa_sdp", "sa_sdp", "sa_wma", "l_dft", "c_5"), 8, (64,)),
            Layer(64, ("sa_sdp", "l_dct", "c_9", "c_9"), 16, (256, 64)),
        )
    )
    return build_model(arch, "mlm", seed=seed, vocab_size=64, max_position_embeddings=64)


def _outputs(model: FlexiBertForMaskedLM, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def check_mode(mode: Mode, *, seed: int = 0) -> None:
    """Assert that ``mode`` keeps the :class:`~edgetran.growprune.modes.Mode` contract on
    :func:`tiny_parent`: it names its kind, steps and rate; ``propose`` returns at most its
    children, distinct valid architectures that differ from the parent, grown (more
    parameters) or pruned (fewer) as its kind says; the same generator gives the same
    proposals; each source computes what the parent computes; the parent is left as it was;
    and a child receives weights from the source by transfer.

    Raises:
        ContractError: naming the clause that failed.
    """
    c = Clauses("Mode", type(mode).__name__)
    c.require(isinstance(mode, Mode), "a mode subclasses edgetran.growprune.Mode")
    c.require(mode.kind in ("grow", "prune"), "kind is 'grow' or 'prune'", repr(mode.kind))
    steps, rate = mode.reference_steps, mode.reference_learning_rate
    c.require(
        isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
        "reference_steps is an integer ≥ 1",
        repr(steps),
    )
    c.require(is_number(rate) and rate > 0, "reference_learning_rate is a number > 0", repr(rate))
    described = mode.describe()
    c.require(
        described.get("mode") == mode.name and _json_ready(described),
        "describe() is JSON-ready and names the mode",
        repr(described),
    )
    parent = tiny_parent(seed)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    proposals = mode.propose(parent, np.random.default_rng(seed))
    c.require(
        isinstance(proposals, list) and all(isinstance(p, Proposal) for p in proposals),
        "propose returns a list of Proposal",
        type(proposals).__name__,
    )
    c.require(bool(proposals), "propose offers a child of a model it applies to")
    c.require(
        len(proposals) <= getattr(mode, "children", 1),
        "propose returns at most the mode's children (1 for a mode without them)",
        str(len(proposals)),
    )
    parent_arch = parent.config.arch
    hashes = [p.arch.hash for p in proposals]
    c.require(
        len(set(hashes)) == len(hashes) and parent_arch.hash not in hashes,
        "children differ from the parent and from each other",
    )
    size = count_parameters(parent_arch)
    for p in proposals:
        grown = count_parameters(p.arch) > size
        c.require(
            grown if mode.kind == "grow" else count_parameters(p.arch) < size,
            f"a {mode.kind} child has {'more' if mode.kind == 'grow' else 'fewer'} parameters "
            "than its parent",
            p.change,
        )
        c.require(isinstance(p.change, str) and bool(p.change), "a proposal says what changed")
    again = mode.propose(parent, np.random.default_rng(seed))
    c.require(
        [(p.arch.hash, p.change) for p in again] == [(p.arch.hash, p.change) for p in proposals],
        "the same generator state gives the same proposals",
    )
    after = parent.state_dict()
    c.require(
        all(torch.equal(before[k], after[k]) for k in before),
        "propose leaves the parent as it was",
    )
    ids = torch.randint(5, 64, (2, 12), generator=torch.Generator().manual_seed(seed))
    expected = _outputs(parent, ids)
    for p in proposals:
        c.require(
            torch.allclose(_outputs(p.source, ids), expected, atol=1e-5),
            "a proposal's source computes what the parent computes",
            p.change,
        )
        child = build_model(p.arch, "mlm", seed=seed, vocab_size=64, max_position_embeddings=64)
        share = transfer_weights(p.source, child, mode="ordered", seed=seed)
        c.require(
            share > 0 and bool(torch.isfinite(_outputs(child, ids)).all()),
            "a child receives weights from its source by transfer, and runs",
            f"{p.change}: share {share:.3f}",
        )


def _json_ready(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
