"""Word vectors from co-occurrence (``edgetran.train.word_vectors``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgetran.train import word_vectors
from edgetran.train.word_vectors import (
    cooccurrence_vectors,
    set_word_embeddings,
    task_word_vectors,
)

# tokens 0-1 are used alike (after 4, before 5), as are 2-3 (after 6, before 7); 8 never occurs
ALIKE = [[4, 0, 5], [4, 1, 5], [6, 2, 7], [6, 3, 7]] * 20 + [[4, 5], [6, 7]]
VOCAB = 9


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_tokens_used_alike_get_alike_vectors():
    vectors, seen = cooccurrence_vectors(ALIKE, VOCAB, dim=4, window=1)
    assert vectors.shape == (VOCAB, 4) and vectors.dtype == np.float32
    assert seen.tolist() == [True] * 8 + [False]
    assert cosine(vectors[0], vectors[1]) > 0.9
    assert cosine(vectors[2], vectors[3]) > 0.9
    assert abs(cosine(vectors[0], vectors[2])) < 0.2
    again, _ = cooccurrence_vectors(ALIKE, VOCAB, dim=4, window=1)
    np.testing.assert_array_equal(vectors, again)  # seeded SVD: the same vectors every time


def test_dimensions_are_capped_by_the_vocabulary_and_empty_text_gives_nothing():
    assert cooccurrence_vectors(ALIKE, VOCAB, dim=64)[0].shape == (VOCAB, VOCAB - 1)
    vectors, seen = cooccurrence_vectors([[1]], VOCAB, dim=4)
    assert not seen.any() and not vectors.any()


def test_embeddings_take_the_first_columns_at_the_initial_scale_and_keep_unseen_rows():
    vectors, seen = cooccurrence_vectors(ALIKE, VOCAB, dim=4, window=1)
    narrow = torch.nn.Embedding(VOCAB, 3)
    before = narrow.weight.detach().clone()
    assert set_word_embeddings(narrow, vectors, seen, std=0.02) == 3
    weight = narrow.weight.detach()
    assert torch.equal(weight[8], before[8])  # never seen: its random row stays
    assert weight[:8].std().item() == pytest.approx(0.02, rel=0.15)
    ratio = weight[:8].numpy() / vectors[:8, :3]
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-4)  # one scale for every column
    wide = torch.nn.Embedding(VOCAB, 6)
    before = wide.weight.detach().clone()
    assert set_word_embeddings(wide, vectors, seen, std=0.02) == 4
    assert torch.equal(wide.weight.detach()[:, 4:], before[:, 4:])  # beyond the vectors: random


class CountingTokenizer:
    """Splits on spaces into ids of a fixed vocabulary, as a Hugging Face tokenizer is called."""

    def __init__(self) -> None:
        self.vocab = {w: i for i, w in enumerate("abcdefgh")}

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def __call__(self, texts, add_special_tokens, truncation, max_length):
        return {"input_ids": [[self.vocab[w] for w in t.split()][:max_length] for t in texts]}


def test_task_vectors_are_computed_once_and_read_back(tmp_path, monkeypatch):
    texts = ["e a f", "e b f", "g c h", "g d h"] * 10  # words, split on spaces
    first = task_word_vectors(CountingTokenizer(), texts, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*_args, **_kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(word_vectors, "cooccurrence_vectors", fail)
    again = task_word_vectors(CountingTokenizer(), texts, tmp_path)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    with pytest.raises(AssertionError, match="computed again"):  # other text: other vectors
        task_word_vectors(CountingTokenizer(), texts[:4], tmp_path)
    # other settings of the method: other vectors, not the cached ones
    monkeypatch.setattr(word_vectors, "DEFAULT_POWER_ITERATIONS", 2)
    with pytest.raises(AssertionError, match="computed again"):
        task_word_vectors(CountingTokenizer(), texts, tmp_path)
