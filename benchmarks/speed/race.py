"""``python -m benchmarks.speed.race``: our methods against easyfsl's, on the same backbone weights, the
same episode tensors and the same thread count (optional: ``pip install -e '.[race]'``).

For each setting it reports the median inference time of one test episode (15 queries per class)
of each implementation and the ratios, and checks outputs where the two definitions agree:

easyfsl gets the same weights in a plain ``nn.Sequential`` Conv-4 (as its users write one), so
the times compare whole implementations, backbone execution included.

- protonet vs easyfsl ``PrototypicalNetworks``: ours scores ``-d²``, easyfsl ``-d`` (same
  prototypes); checked: ``ours == -(easyfsl)²``.
- relnet vs easyfsl ``RelationNetworks``: easyfsl averages support maps and uses its own relation
  module (adaptive pooling), so it is timed as published and, for the equality check, once more
  with our relation module plugged in (``aggregate="mean"``); checked: equal scores.
- matchnet vs easyfsl ``MatchingNetworks``: easyfsl always uses full context embeddings, so it is
  timed against ours with and without them; definitions differ, no equality check.

Writes ``results/timing/race.md`` and ``race.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from benchmarks.engine.devices import cpu_model
from benchmarks.engine.timing import median_ms
from methods import Conv4, backbone_config
from methods.backbones import ConvBlock
from methods.matchnet import MatchingNet, MatchingNetOptions
from methods.protonet import PrototypicalNet
from methods.relnet import ConvRelation, RelationNet, RelationNetOptions

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
QUERIES = 15


class PairwiseRelation(nn.Module):
    """Our conv relation module in easyfsl's interface: pairs ``[P, 2D, h, w]`` -> scores ``[P, 1]``."""

    def __init__(self, method: RelationNet) -> None:
        super().__init__()
        assert isinstance(method.relation, ConvRelation), "the race uses the conv relation module"
        self.relation: ConvRelation = method.relation

    def forward(self, pairs: Tensor) -> Tensor:
        return torch.sigmoid(self.relation.after_first(self.relation.first(pairs))).unsqueeze(1)


def textbook_conv4(net: Conv4) -> nn.Sequential:
    """A plain ``nn.Sequential`` Conv-4 (conv, BatchNorm, ReLU, pool; contiguous tensors), as an
    easyfsl user would write it, holding a copy of ``net``'s weights."""
    layers: list[nn.Module] = []
    for block in cast(list[ConvBlock], copy.deepcopy(net).blocks):
        layers += [block.conv, block.norm, nn.ReLU()]
        if block.pool:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers).to(memory_format=torch.contiguous_format)


def easyfsl_scores(model: Any, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
    model.process_support_set(support_x, support_y)
    return model(query_x)


def race(rounds: int, settings: list[tuple[int, int]] = SETTINGS) -> list[dict]:
    """Time every pair of implementations per ``(n_way, k_shot)`` setting.

    Raises:
        AssertionError: outputs differ where the definitions agree.
    """
    rows: list[dict] = []
    for n_way, k_shot in settings:
        lane = _Lane.of(n_way, k_shot, rounds, rows)
        _race_protonet(lane)
        _race_relnet(lane)
        _race_matchnet(lane)
    return rows


@dataclass
class _Lane:
    """One setting's episode tensors, and the rows its races add."""

    setting: str
    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    rounds: int
    rows: list[dict]

    @classmethod
    def of(cls, n_way: int, k_shot: int, rounds: int, rows: list[dict]) -> _Lane:
        g = torch.Generator().manual_seed(0)
        support_x = torch.rand(n_way * k_shot, 1, 28, 28, generator=g)
        query_x = torch.rand(n_way * QUERIES, 1, 28, 28, generator=g)
        support_y = torch.arange(n_way).repeat_interleave(k_shot)
        return cls(f"{n_way}-way {k_shot}-shot", support_x, support_y, query_x, rounds, rows)

    def scores(self, model: Any, theirs: bool = False) -> Tensor:
        """``model``'s scores of the lane's episode (easyfsl's calling convention if ``theirs``)."""
        with torch.inference_mode():
            if theirs:
                return easyfsl_scores(model, self.support_x, self.support_y, self.query_x)
            return model(self.support_x, self.support_y, self.query_x)

    def time(self, model: Any, theirs: bool = False) -> float:
        """Median wall milliseconds of :meth:`scores`."""
        return median_ms(lambda: self.scores(model, theirs), self.rounds)

    def add(self, method: str, ours_name: str, ours: Any, theirs_name: str, theirs: Any,
            equal: bool | None = None) -> None:  # fmt: skip
        ours_ms, theirs_ms = self.time(ours), self.time(theirs, theirs=True)
        self.rows.append(
            {
                "setting": self.setting,
                "method": method,
                "ours": ours_name,
                "easyfsl": theirs_name,
                "ours_ms": ours_ms,
                "easyfsl_ms": theirs_ms,
                "speedup": theirs_ms / ours_ms,
                "outputs_equal": equal,
            }
        )


def _race_protonet(lane: _Lane) -> None:
    from easyfsl.methods import PrototypicalNetworks

    torch.manual_seed(0)
    backbone = Conv4(1, backbone_config("conv4")).eval()
    ours = PrototypicalNet(backbone).eval()
    theirs = PrototypicalNetworks(nn.Sequential(textbook_conv4(backbone), nn.Flatten())).eval()
    a, b = lane.scores(ours), lane.scores(theirs, theirs=True)
    equal = bool(torch.allclose(a, -(b**2), rtol=1e-3, atol=1e-3))
    assert equal, "protonet scores differ from easyfsl's squared distances"
    lane.add("protonet", "protonet", ours, "PrototypicalNetworks", theirs, equal)


def _race_relnet(lane: _Lane) -> None:
    from easyfsl.methods import RelationNetworks

    torch.manual_seed(0)
    paper_maps = Conv4(1, backbone_config("conv4-relnet")).eval()
    fast = RelationNet(paper_maps, RelationNetOptions()).eval()
    naive = RelationNet(paper_maps, RelationNetOptions(pairwise="naive")).eval()
    naive.relation = fast.relation
    published = RelationNetworks(textbook_conv4(paper_maps), feature_dimension=64).eval()
    lane.add("relnet", "relnet (factorized)", fast, "RelationNetworks (its module)", published)
    lane.rows[-1]["naive_ms"] = lane.time(naive)
    mean_ours = RelationNet(paper_maps, RelationNetOptions(aggregate="mean")).eval()
    mean_ours.relation = fast.relation
    plugged = RelationNetworks(
        textbook_conv4(paper_maps), feature_dimension=64, relation_module=PairwiseRelation(fast)
    ).eval()
    equal = bool(torch.allclose(lane.scores(mean_ours), lane.scores(plugged, True), atol=1e-5))
    assert equal, "relnet (mean) scores differ from easyfsl with the same relation module"
    lane.add("relnet", "relnet (factorized, mean)", mean_ours, "RelationNetworks (our module)",
             plugged, equal)  # fmt: skip


def _race_matchnet(lane: _Lane) -> None:
    from easyfsl.methods import MatchingNetworks

    torch.manual_seed(0)
    flat = Conv4(1, backbone_config("conv4")).eval()
    theirs = MatchingNetworks(
        nn.Sequential(textbook_conv4(flat), nn.Flatten()), feature_dimension=64
    ).eval()
    lane.add("matchnet", "matchnet", MatchingNet(flat).eval(), "MatchingNetworks (FCE)", theirs)
    fce = MatchingNet(flat, MatchingNetOptions(fce=True)).eval()
    lane.add("matchnet", "matchnet (FCE)", fce, "MatchingNetworks (FCE)", theirs)


def markdown(rows: list[dict], threads: int) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["naive_ms"] = frame.get("naive_ms")
    table = frame[
        [
            "setting",
            "ours",
            "easyfsl",
            "ours_ms",
            "easyfsl_ms",
            "speedup",
            "naive_ms",
            "outputs_equal",
        ]
    ]
    return "\n".join(
        [
            "# Race against easyfsl",
            "",
            "Generated by `python -m benchmarks.speed.race`; never edited by hand. Median wall time of one "
            f"test-episode inference (1x28x28 images, {QUERIES} queries per class), same Conv-4 "
            "weights (easyfsl's in a plain nn.Sequential Conv-4, as its users write one), same "
            f"episode tensors, {threads} threads, on {cpu_model()}, "
            f"torch {torch.__version__}. `speedup` = easyfsl ms / ours ms; `naive_ms` is our pairwise "
            "reference form of the relation module; `outputs_equal` is checked where the definitions agree.",
            "",
            table.round(2).to_markdown(index=False),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed.race", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(REPO / "results" / "timing"))
    args = parser.parse_args(argv)
    try:
        import easyfsl  # noqa: F401
    except ImportError:
        print("easyfsl is not installed; install the optional extra: pip install -e '.[race]'")
        return 2
    torch.set_num_threads(args.threads)
    rows = race(args.rounds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "race.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, args.threads)
    (out / "race.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
