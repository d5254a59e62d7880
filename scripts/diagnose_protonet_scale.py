"""Step-by-step statistics of ProtoNet 5-way 1-shot training on miniImageNet from scratch.

The diagnosis behind ``protonet.temperature`` (docs/mini-imagenet.md, "Why ProtoNet sat at chance"): per step,
the loss, the gradient norm, the mean feature norm, the spread of a query's logits, its top
probability and the last BatchNorm's mean scale; validation accuracy every 100 steps.

    python scripts/diagnose_protonet_scale.py --data-root R --steps 400 --temperature 1 --out t1.json
    python scripts/diagnose_protonet_scale.py --data-root R --steps 400 --temperature 64 --out t64.json

Adam 1e-3 as the ``paper-cpu`` recipe, seed 0, fp32, the training episodes of the runner.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F

from datasets import EpisodeSampler
from datasets.registry import dataset_spec
from methods import build_backbone, create_method


def validation_accuracy(model: torch.nn.Module, sampler: EpisodeSampler, episodes: int) -> float:
    """Mean accuracy of ``model`` (eval mode) over the first ``episodes`` of ``sampler``."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for index in range(episodes):
            episode = sampler[index]
            scores = model(episode.support_x, episode.support_y, episode.query_x)
            total += (scores.argmax(1) == episode.query_y).float().mean().item()
    model.train()
    return total / episodes


def step_statistics(model, episode, optimizer) -> dict[str, float]:
    """One training step; what it looked like."""
    features = model.backbone(torch.cat([episode.support_x, episode.query_x]))
    support, query = features.split([len(episode.support_x), len(episode.query_x)])
    scores = model.scores_from_features(support, episode.support_y, query, 5)
    loss = F.cross_entropy(scores, episode.query_y)
    optimizer.zero_grad()
    loss.backward()
    grads = [p.grad.pow(2).sum().item() for p in model.parameters() if p.grad is not None]
    optimizer.step()
    flat, detached = features.detach().flatten(1), scores.detach()
    return {
        "loss": loss.item(),
        "grad_norm": math.sqrt(sum(grads)),
        "feature_norm": flat.norm(dim=1).mean().item(),
        "logit_spread": (detached.max(1).values - detached.min(1).values).mean().item(),
        "top_probability": detached.softmax(1).max(1).values.mean().item(),
        "last_bn_scale": model.backbone.blocks[-1].norm.weight.detach().abs().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", required=True, help="JSON file of the per-step statistics")
    args = parser.parse_args()
    data = dataset_spec("mini-imagenet").load(args.data_root, None, True)
    torch.manual_seed(0)
    backbone = build_backbone("conv4", 3, image_size=84)
    model = create_method("protonet", backbone, {"temperature": args.temperature})
    train = EpisodeSampler(data.split("standard", "train"), 5, 1, 15, 0, "train")
    val = EpisodeSampler(data.split("standard", "val"), 5, 1, 15, 0, "val")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for step in range(args.steps):
        entry = {"step": step, **step_statistics(model, train[step], optimizer)}
        if step % 100 == 99:
            entry["val_accuracy"] = validation_accuracy(model, val, 100)
            print(json.dumps(entry), flush=True)
        history.append(entry)
    with open(args.out, "w") as stream:
        json.dump(history, stream, indent=1)


if __name__ == "__main__":
    main()
