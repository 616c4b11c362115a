"""The shipped model is exported from the weights committed beside it: one version for the weights file, its
description, the card and the int8 file, and the naive load-test baseline serves those same weights."""

from __future__ import annotations

import json

import pytest

from contract.model_file import VERSION
from export import checkpoint, metadata, weights_file
from export.card import portable
from loadtest.baseline import WEIGHTS, NaiveModel
from serve.settings import DEFAULT_MODEL_PATH

CARD = DEFAULT_MODEL_PATH.parent / "model-card.json"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def loaded() -> checkpoint.LoadedCheckpoint:
    assert WEIGHTS.is_file(), f"{WEIGHTS} is missing: the repository ships it"
    return checkpoint.load(WEIGHTS)


def test_the_card_version_is_the_committed_weights_hash(card, loaded):
    version = checkpoint.weights_hash(loaded.net)
    assert version == card[VERSION] == metadata.read(DEFAULT_MODEL_PATH)[VERSION]
    assert json.loads(weights_file.sidecar_path(WEIGHTS).read_text())["version"] == version


def test_the_card_names_the_weights_file_and_where_it_came_from(card, loaded):
    weights = card["weights"]
    assert weights["file"] == "shipped/weights/resnet18-cifar10.safetensors"
    assert weights["sha256"] == weights_file.file_sha256(WEIGHTS)
    assert weights["origin"] == loaded.origin
    release = weights["origin"]["recovered_from"]
    assert release["version"] == "662bcc9c2096"  # the int8 release the weights were recovered from
    assert release["git_sha"] == "69a7f2dea7af8b0d7397ac83b0c6e9865eac0d85"  # the commit of the original GPU run
    assert release["data_md5"] == card["data_md5"]  # trained on the data data.dvc tracks
    assert loaded.labels == card["labels"]
    # the original GPU run's config travels with the weights; the card shows it without that machine's paths
    assert portable(loaded.training["config"]) == card["config"]


def test_the_naive_baseline_serves_the_committed_weights(loaded):
    naive = NaiveModel()
    assert checkpoint.weights_hash(naive.net) == checkpoint.weights_hash(loaded.net)
    assert naive.labels == loaded.labels
