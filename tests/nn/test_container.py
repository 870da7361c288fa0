"""ParameterList: registration under PyTorch's names, state_dict interchange, indexing,
optimisation and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn


class _Scales(nn.Module):
    def __init__(self, mod) -> None:
        super().__init__()
        self.scales = mod.ParameterList([mod.Parameter(ck_or_torch(mod).ones(3)) for _ in range(2)])
        self.scales.append(mod.Parameter(ck_or_torch(mod).zeros(2, 2)))


def ck_or_torch(mod):
    return ck if mod is nn else torch


def test_parameter_list_state_dict_keys_match_torch() -> None:
    t = torch.nn.Module()
    t.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(3)) for _ in range(2)])
    t.scales.append(torch.nn.Parameter(torch.zeros(2, 2)))
    c = _Scales(nn)
    assert list(c.state_dict()) == list(t.state_dict()) == ["scales.0", "scales.1", "scales.2"]
    sd = {k: v.detach().numpy() + 1.5 for k, v in t.state_dict().items()}
    c.load_state_dict({k: ck.tensor(v) for k, v in sd.items()})
    assert np.array_equal(c.scales[2].numpy(), np.full((2, 2), 1.5))
    assert len(list(c.parameters())) == 3


def test_parameter_list_indexing_wrapping_and_training() -> None:
    p = nn.ParameterList()
    p.extend([ck.tensor([1.0, 2.0]), nn.Parameter(ck.tensor([3.0]))])
    assert len(p) == 2 and isinstance(p[0], nn.Parameter) and p[0].requires_grad
    assert p[-1] is list(p)[1]
    p[0] = ck.tensor([5.0, 6.0])
    assert np.array_equal(p[0].numpy(), [5.0, 6.0])
    loss = (p[0] * p[0]).sum() + p[1].sum()
    loss.backward()
    ck.optim.SGD(p.parameters(), lr=0.1).step()
    assert np.allclose(p[0].numpy(), [4.0, 4.8]) and np.allclose(p[1].numpy(), [2.9])
    with pytest.raises(IndexError, match="ParameterList: index 2 is out of range for 2"):
        p[2]
    with pytest.raises(TypeError, match="ParameterList: expected a Parameter or Tensor; got list"):
        p.append([1.0])
