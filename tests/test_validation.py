import pytest
import torch

import foundry
from foundry import FoundryInputError


@pytest.fixture(scope="module")
def model():
    return foundry.create_model("tiny").eval()


@pytest.mark.parametrize("bad, match", [
    (torch.randn(2, 256), "xyz in the last dimension"),
    (torch.randn(2, 3, 256, 3), "rank 4"),
    (torch.randn(2, 256, 6), "drop normals"),
    (torch.randint(0, 5, (2, 256, 3)), "float"),
    (torch.randn(2, 8, 3), "at least 16"),
    (torch.empty(2, 0, 3), "empty"),
    ([[0.0, 0.0, 0.0]], "torch.Tensor"),
])
def test_bad_points_are_named(model, bad, match):
    with pytest.raises(FoundryInputError, match=match):
        model.forward_tokens(bad)


def test_nan_points_name_the_cloud(model):
    pts = torch.randn(3, 256, 3)
    pts[1, 7, 2] = float("nan")
    with pytest.raises(FoundryInputError, match=r"NaN or Inf .*\[1\]"):
        model.forward_features(pts)
    pts[1, 7, 2] = float("inf")
    with pytest.raises(FoundryInputError, match="NaN or Inf"):
        model.forward_features(pts)


def test_single_cloud_gets_a_batch_dim(model):
    tokens, centers = model.forward_tokens(torch.randn(256, 3))
    assert tokens.shape[0] == 1
