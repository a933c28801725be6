"""Word vectors from the task's own text: a start for the word embeddings of a model that is
trained from scratch.

A model that ``quick`` fine-tunes without a pretrained neighbour learns every token's embedding
from the labels alone, in a few hundred steps; the wide ones had not "taken off" by then at some
seeds (BENCHMARKS.md). Counting which tokens occur near which others in the training text costs
seconds and needs no labels: the positive pointwise mutual information of token pairs at most
``window`` tokens apart (context counts raised to ``smoothing`` = 0.75, as in Levy, Goldberg &
Dagan 2015), factorised by a truncated SVD (scikit-learn's ``randomized_svd``, seeded), gives each
token a vector (row ``i`` of ``U·√S``) in which tokens used alike lie close. A model ``h`` wide
takes the first ``h`` columns (the strongest directions), rescaled to its embeddings' initial
standard deviation; tokens that never occur, and columns beyond those computed, keep their random
initial values.

The vectors are computed once per workspace, tokenizer and task and kept as ``.npz``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: columns computed: the widest layer of the CPU-sized space (wider models keep random columns)
DEFAULT_DIM = 512
DEFAULT_WINDOW = 4
DEFAULT_SMOOTHING = 0.75
#: power iterations of the randomised SVD: scikit-learn's "auto" for 512 of 8k columns, the
#: setting quick's accuracies were measured with. 2 would take 4 s instead of 10 on two cores
#: (the tweets' 8k-token PPMI) and span 85-92% of the same 128-256 leading directions, but
#: their effect on accuracy is unmeasured (BENCHMARKS.md).
DEFAULT_POWER_ITERATIONS = 7


def cooccurrence_vectors(
    token_ids: Sequence[Sequence[int]],
    vocab_size: int,
    dim: int = DEFAULT_DIM,
    window: int = DEFAULT_WINDOW,
    smoothing: float = DEFAULT_SMOOTHING,
    seed: int = 0,
    power_iterations: int = DEFAULT_POWER_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, seen)``: the PPMI-SVD vectors, shape ``(vocab_size, d)`` with
    ``d = min(dim, vocab_size - 1)``, and which tokens occur, shape ``(vocab_size,)``."""
    import scipy.sparse as sp
    from sklearn.utils.extmath import randomized_svd

    rows, cols = [], []
    for sequence in token_ids:
        ids = np.asarray(sequence, dtype=np.int64)
        for distance in range(1, window + 1):
            if len(ids) > distance:
                rows.append(ids[:-distance])
                cols.append(ids[distance:])
    seen = np.zeros(vocab_size, dtype=bool)
    d = max(1, min(dim, vocab_size - 1))
    if not rows:
        return np.zeros((vocab_size, d), dtype=np.float32), seen
    row, col = np.concatenate(rows), np.concatenate(cols)
    counts = sp.coo_matrix((np.ones(len(row)), (row, col)), shape=(vocab_size, vocab_size))
    counts = (counts + counts.T).tocoo()  # symmetric: a pair counts for both tokens
    counts.sum_duplicates()
    words = np.asarray(counts.sum(axis=1)).ravel()
    contexts = words**smoothing
    pmi = np.log(counts.data * contexts.sum() / (words[counts.row] * contexts[counts.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix(
        (pmi[keep], (counts.row[keep], counts.col[keep])), shape=(vocab_size, vocab_size)
    )
    u, s, _ = randomized_svd(ppmi, n_components=d, n_iter=power_iterations, random_state=seed)
    seen[words > 0] = True
    return (u * np.sqrt(s)).astype(np.float32), seen


def task_word_vectors(
    tokenizer, texts: Sequence[str], cache_dir: str | Path, max_length: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cooccurrence_vectors` of ``texts`` as ``tokenizer`` splits them, cached in
    ``cache_dir`` under a digest of the tokenizer's vocabulary, the texts and the method's
    settings."""
    digest = hashlib.sha256()
    settings = (DEFAULT_DIM, DEFAULT_WINDOW, DEFAULT_SMOOTHING, DEFAULT_POWER_ITERATIONS)
    digest.update(repr(settings).encode())
    digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = Path(cache_dir) / f"{digest.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as saved:
            return saved["vectors"], saved["seen"]
    encoded = tokenizer(
        list(texts), add_special_tokens=False, truncation=True, max_length=max_length
    )["input_ids"]
    dim, window, smoothing, power_iterations = settings
    vectors, seen = cooccurrence_vectors(
        encoded, len(tokenizer), dim, window, smoothing, power_iterations=power_iterations
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, vectors=vectors, seen=seen)
    partial.replace(path)  # a crash leaves no half-written cache
    return vectors, seen


def set_word_embeddings(embedding, vectors: np.ndarray, seen: np.ndarray, std: float) -> int:
    """Overwrite the rows of ``embedding`` (a ``torch.nn.Embedding``, ``(V, h)``) of the tokens
    in ``seen`` with the first ``h`` columns of ``vectors``, scaled to standard deviation
    ``std``; returns how many columns were set."""
    import torch

    weight = embedding.weight
    width = min(weight.shape[1], vectors.shape[1])
    block = vectors[seen, :width]
    scale = std / block.std() if block.size and block.std() > 0 else 0.0
    if not scale:
        return 0
    with torch.no_grad():
        rows = torch.from_numpy(np.flatnonzero(seen))
        weight[rows, :width] = torch.from_numpy(block * scale).to(weight.dtype)
    return width
