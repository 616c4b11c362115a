"""Outlier exposure on the embedding (train/feature_margin.py): running class statistics, the margin, the hook."""

from __future__ import annotations

import torch

from tests.train.test_robust_training import photos
from train import outlier_exposure
from train.feature_margin import FeatureMargin, head_input_hook
from train.models import build
from train.module import LitClassifier


def test_the_first_batch_sets_the_class_means_and_later_ones_move_them():
    margin = FeatureMargin(classes=2, dims=2)
    embeddings = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    labels = torch.tensor([0, 0, 1, 1])
    margin.update(embeddings, labels)
    assert torch.allclose(margin.means, torch.tensor([[1.0, 0.0], [11.0, 10.0]]))
    assert torch.allclose(margin.variance, torch.tensor([1.0, 1e-6]))
    margin.update(embeddings + 20, labels)
    assert torch.allclose(margin.means, torch.tensor([[2.0, 1.0], [12.0, 11.0]]))  # 5 % of the way to +20


def test_the_distance_is_to_the_nearest_mean_in_units_of_the_spread():
    margin = FeatureMargin(classes=2, dims=2)
    margin.means.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
    margin.variance.copy_(torch.tensor([4.0, 1.0]))
    distance = margin.log_distance(torch.tensor([[9.0, 0.0], [0.0, 3.0]])).exp()
    assert torch.allclose(distance, torch.tensor([0.25, 9.0]))


def test_outliers_near_a_class_cost_more_than_those_far_from_every_class_and_are_pushed_away():
    torch.manual_seed(0)
    inliers = torch.cat([torch.randn(50, 4), torch.randn(50, 4) + 8])
    labels = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    margin = FeatureMargin(classes=2, dims=4)
    near = (inliers[:5] * 0.1).requires_grad_()
    far = torch.full((5, 4), 30.0)
    assert margin.loss(inliers, labels, near) > margin.loss(inliers, labels, far) + 1
    before = margin.log_distance(near.detach())
    margin.loss(inliers, labels, near).backward()
    assert (margin.log_distance(near.detach() - 10 * near.grad) > before).all()


def test_the_hook_keeps_the_head_input():
    net = build("mlp", 10)
    store = {}
    head_input_hook(net, store)
    net(photos(4))
    assert store["embedding"].shape == (4, 512)


def test_training_with_the_term_moves_unseen_outliers_further_from_the_classes(warm_start):
    probe = outlier_exposure.spectral_noise(64, generator=torch.Generator().manual_seed(1))  # never trained on
    images, labels = photos(32), torch.arange(32) % 10

    def probe_distance_after_training(feature_weight: float) -> float:
        torch.manual_seed(0)
        module = LitClassifier(arch="mlp", init_weights=warm_start, outlier_share=0.5, outlier_weight=0.0,
                               outlier_feature_weight=feature_weight)  # fmt: skip
        module.log = lambda *args, **kwargs: None  # outside a Trainer
        module.net.preprocess.set_stats([0.5] * 3, [0.25] * 3)
        optimiser = torch.optim.SGD(module.net.parameters(), lr=0.01, momentum=0.9)
        judge = FeatureMargin(10, 512)
        for _ in range(40):
            optimiser.zero_grad()
            module._training_loss((images, labels, images)).backward()
            optimiser.step()
        with torch.no_grad():
            store = {}
            head_input_hook(module.net, store)
            module(images)
            inlier_embeddings = store["embedding"]
            judge.update(inlier_embeddings, labels)
            inside = judge.log_distance(inlier_embeddings)
            module(probe)
            outside = judge.log_distance(store["embedding"])
        return float(outside.median() - inside.quantile(0.96))  # log distance past the inliers' threshold

    with_term, without = probe_distance_after_training(1.0), probe_distance_after_training(0.0)
    assert with_term > without + 0.5, (with_term, without)


def test_the_running_statistics_are_saved_with_the_module(warm_start):
    module = LitClassifier(arch="mlp", init_weights=warm_start, outlier_share=0.25, outlier_feature_weight=0.5)
    assert {"feature_margin.means", "feature_margin.variance", "feature_margin.seen"} <= set(module.state_dict())
    assert LitClassifier(arch="mlp").feature_margin is None
