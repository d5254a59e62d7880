"""Small episodes for method tests."""

from __future__ import annotations

import torch


def random_episode(n_way=5, k_shot=2, n_query=3, image=(1, 28, 28), seed=0):
    """``(support_x [N*K, *image], support_y [N*K], query_x [N*Q, *image], query_y [N*Q])``."""
    g = torch.Generator().manual_seed(seed)
    support_x = torch.rand(n_way * k_shot, *image, generator=g)
    query_x = torch.rand(n_way * n_query, *image, generator=g)
    support_y = torch.arange(n_way).repeat_interleave(k_shot)
    query_y = torch.arange(n_way).repeat_interleave(n_query)
    return support_x, support_y, query_x, query_y


class Identity(torch.nn.Module):
    """A parameter-free 'backbone' returning its input, for hand-checkable scores."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels

    def forward(self, x):
        return x
