"""Prototypical Networks (Snell et al., NeurIPS 2017)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import FewShotMethod, class_means
from .registry import register_method


@register_method
class PrototypicalNet(FewShotMethod):
    """Prototypical Networks: negative squared Euclidean distance to the class-mean embedding."""

    name = "protonet"

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        prototypes = class_means(support.flatten(1), support_y, n_way)  # [N, D]
        difference = query.flatten(1).unsqueeze(1) - prototypes.unsqueeze(0)  # [Q, N, D]
        return -difference.pow(2).sum(-1)

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        return F.cross_entropy(scores, query_y)
