"""Shape checks shared by every method."""

from __future__ import annotations

import pytest
import torch

from methods import check_episode


def test_returns_the_number_of_classes():
    assert (
        check_episode(
            torch.zeros(6, 1, 4, 4), torch.tensor([2, 2, 0, 0, 1, 1]), torch.zeros(3, 1, 4, 4)
        )
        == 3
    )


@pytest.mark.parametrize(
    ("support_x", "support_y", "query_x", "message"),
    [
        (
            torch.zeros(4, 16),
            torch.tensor([0, 0, 1, 1]),
            torch.zeros(2, 1, 4, 4),
            r"image batches \[B, C, H, W\]",
        ),
        (
            torch.zeros(4, 1, 4, 4),
            torch.tensor([0, 0, 1, 1]),
            torch.zeros(2, 1, 5, 5),
            "differ in shape",
        ),
        (
            torch.zeros(4, 1, 4, 4),
            torch.tensor([0, 1, 1]),
            torch.zeros(2, 1, 4, 4),
            "S = 4 support images",
        ),
        (torch.zeros(4, 1, 4, 4), torch.tensor([0.0, 0, 1, 1]), torch.zeros(2, 1, 4, 4), "int64"),
        (
            torch.zeros(4, 1, 4, 4),
            torch.tensor([0, 0, 2, 2]),
            torch.zeros(2, 1, 4, 4),
            r"every label 0..N-1",
        ),
    ],
)
def test_malformed_episodes_are_rejected(support_x, support_y, query_x, message):
    with pytest.raises(ValueError, match=message):
        check_episode(support_x, support_y, query_x)
