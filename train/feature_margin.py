"""Outlier exposure on the features the outlier score reads, not on the softmax.

The shipped outlier score is a distance in feature space: the embedding's (and an early map's) Mahalanobis distance to
the nearest class mean, fitted after training (export/outlier_score.py). Outlier exposure with a uniform target
flattens the softmax on outliers, which a linear head can do while leaving their embeddings near a class: measured,
the softmax separates real photos better after it and the feature score worse (benchmarks/finetune/README.md, round
six). This term asks for what the score measures: each outlier's embedding further from every class mean, in units
of the inliers' spread, than all but a few inliers are (the score's threshold keeps 96 % of them).

The class means and the per-dimension variance are running averages over the training batches' embeddings (a
diagonal stand-in for the score's shared covariance, which is fitted once after training).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

KEEP = 0.96  # the share of inliers the margin leaves inside (export/outlier_score.py's threshold keeps as many)
MOMENTUM = 0.05  # of the running means and variance


class FeatureMargin(nn.Module):
    def __init__(self, classes: int, dims: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(classes, dims))
        self.register_buffer("variance", torch.ones(dims))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Move the running class means and variance towards this batch's (classes absent from it keep theirs)."""
        embeddings = embeddings.float()
        rate = 1.0 if self.seen == 0 else MOMENTUM
        for label in labels.unique():
            self.means[label].lerp_(embeddings[labels == label].mean(dim=0), rate)
        self.variance.lerp_((embeddings - self.means[labels]).pow(2).mean(dim=0).clamp_min(1e-6), rate)
        self.seen += 1

    def log_distance(self, embeddings: torch.Tensor) -> torch.Tensor:
        """log of the squared standardised distance to the nearest class mean, per picture."""
        scaled = embeddings.float() / self.variance.sqrt()
        centres = self.means / self.variance.sqrt()
        return torch.cdist(scaled, centres).pow(2).min(dim=1).values.clamp_min(1e-12).log()

    def loss(self, inliers: torch.Tensor, labels: torch.Tensor, outliers: torch.Tensor) -> torch.Tensor:
        """Softplus of how far each outlier falls short of the inliers' KEEP quantile of distance (that quantile
        measured on this batch, held fixed); the running statistics move after."""
        self.update(inliers.detach(), labels)
        margin = torch.quantile(self.log_distance(inliers.detach()), KEEP)
        return F.softplus(margin - self.log_distance(outliers)).mean()


def head(net: nn.Module) -> nn.Linear:
    """The network's last Linear layer: its input is the embedding."""
    return [module for module in net.modules() if isinstance(module, nn.Linear)][-1]


def head_input_hook(net: nn.Module, store: dict) -> torch.utils.hooks.RemovableHandle:
    """Keep the input of the network's head (its embedding) in store["embedding"] on every forward."""
    return head(net).register_forward_pre_hook(lambda _, inputs: store.__setitem__("embedding", inputs[0]))
