"""Owned randomness for torch: a seeded block that leaves the caller's generator as it was.

Components take a ``seed`` and use local generators; only entry points (CLI commands,
benchmark scripts) seed globally. Where torch takes no generator argument (weight
initialisation, dropout), a component runs its seeded work inside :func:`torch_seeded`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for the block and restore the caller's state afterwards.

    CPU only: the networks built and trained in these blocks live on the CPU, and forking
    CUDA's generators would initialise CUDA in processes that never use it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield
