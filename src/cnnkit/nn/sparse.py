"""Embedding: a learned table of vectors looked up by integer index."""

from __future__ import annotations

from typing import Any

from cnnkit.backend import is_meta
from cnnkit.functional.embedding import _padding_idx, embedding
from cnnkit.nn import init
from cnnkit.nn._util import empty_param
from cnnkit.nn.module import Module, Parameter
from cnnkit.tensor import Tensor


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of ``embedding_dim`` values, looked up by
    integer index; initialised ``N(0, 1)``, the ``padding_idx`` row zero (and never
    updated by gradients).

    Shapes: input ``(*)`` integers -> ``(*, embedding_dim)``; weight
    ``(num_embeddings, embedding_dim)``.
    """

    _samplewise = True

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Tensor | None = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        where = "Embedding"
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(
                f"{where}: num_embeddings and embedding_dim must be positive; got "
                f"{num_embeddings}, {embedding_dim}"
            )
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError(
                f"{where}: max_norm, scale_grad_by_freq and sparse are not supported"
            )
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = _padding_idx(padding_idx, self.num_embeddings, where)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            self.weight = empty_param((num_embeddings, embedding_dim), dtype, device, where)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(
                    f"{where}: _weight must have shape ({num_embeddings}, {embedding_dim}); "
                    f"got {tuple(_weight.shape)}"
                )
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None and not is_meta(self.weight):
            self.weight.array[self.padding_idx] = 0

    def forward(self, input: Any) -> Tensor:
        return embedding(input, self.weight, self.padding_idx)

    @classmethod
    def from_pretrained(
        cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
        **kwargs: Any,
    ) -> Embedding:  # fmt: skip
        """An Embedding holding ``embeddings`` (2-D); ``freeze`` turns off its gradient."""
        if embeddings.ndim != 2:
            raise ValueError(
                f"Embedding.from_pretrained: embeddings must be 2-D; got {tuple(embeddings.shape)}"
            )
        rows, dim = embeddings.shape
        return cls(rows, dim, padding_idx, _weight=embeddings, _freeze=freeze, **kwargs)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
