"""Stands in for `timm.models.layers.drop_path`, the one thing the vendored modules.py takes from timm (not a
dependency here). Written for these tests, not vendored; the parity tests build every model with
drop_path_rate=0, where the official blocks use nn.Identity and never call it."""

import torch


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: in training, zero each sample's residual branch [B, ...] with probability drop_prob and
    rescale the kept ones by 1 / (1 - drop_prob); the identity otherwise."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    kept = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) < keep
    return x * kept / keep
