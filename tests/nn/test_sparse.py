"""Embedding against PyTorch: lookups, the weight gradient (repeated indices, padding_idx),
initialisation, from_pretrained, state_dict keys and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.functional.embedding import embedding
from tests.conftest import assert_close


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("shape", [(4, 6), (7,), (2, 3, 2), ()])
def test_embedding_matches_torch(padding_idx, shape) -> None:
    t = torch.nn.Embedding(6, 5, padding_idx=padding_idx).double()
    c = nn.Embedding(6, 5, padding_idx=padding_idx, dtype="float64")
    assert list(c.state_dict()) == list(t.state_dict())
    c.load_state_dict(t.state_dict())
    idx = np.random.default_rng(0).integers(0, 6, size=shape)
    if idx.size > 2:
        idx.flat[:3] = [2, 2, 5]  # repeats and the padding row
    yt = t(torch.tensor(idx))
    yc = c(ck.tensor(idx))
    assert_close(yc, yt)
    g = np.random.default_rng(1).normal(size=tuple(yt.shape))
    yt.backward(torch.tensor(g))
    yc.backward(ck.tensor(g))
    assert_close(c.weight.grad, t.weight.grad)


def test_embedding_init_and_padding_row() -> None:
    ck.manual_seed(0)
    c = nn.Embedding(4000, 8, padding_idx=3)
    w = c.weight.numpy()
    assert c.weight.dtype == np.float32
    assert np.array_equal(w[3], np.zeros(8))
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1), as PyTorch
    assert c.padding_idx == 3 and nn.Embedding(5, 2, padding_idx=-2).padding_idx == 3
    assert repr(nn.Embedding(5, 3, padding_idx=1)) == repr(torch.nn.Embedding(5, 3, padding_idx=1))


def test_embedding_from_pretrained_and_gradcheck() -> None:
    table = ck.tensor(np.arange(12.0).reshape(4, 3))
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad
    assert np.array_equal(frozen(ck.tensor([3, 0])).numpy(), [[9, 10, 11], [0, 1, 2]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    w = ck.tensor(np.random.default_rng(0).normal(size=(5, 3)), requires_grad=True)
    idx = ck.tensor([[1, 4, 1], [0, 0, 2]])
    assert ck.gradcheck(lambda a: embedding(idx, a) * 1.5, [w])


def test_embedding_rejects_bad_input() -> None:
    c = nn.Embedding(5, 2)
    with pytest.raises(IndexError, match="embedding: index 5 is out of range for 5 embeddings"):
        c(ck.tensor([1, 5]))
    with pytest.raises(IndexError, match="index -1 is out of range"):
        c(ck.tensor([-1]))
    with pytest.raises(TypeError, match="embedding: input must hold integer indices"):
        c(ck.tensor([1.0]))
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be within \[-5, 5\)"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(NotImplementedError, match="max_norm"):
        nn.Embedding(5, 2, max_norm=1.0)
