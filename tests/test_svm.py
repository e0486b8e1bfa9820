import numpy as np
import pytest
import torch

import foundry
from foundry.eval.svm import extract_features, linear_svm_eval
from foundry.validation import FoundryInputError


def _blobs(n_per, seed):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0] * 8, [3.0] + [0.0] * 7, [0.0, 3.0] + [0.0] * 6])
    x = np.concatenate([rng.normal(m, 1.0, size=(n_per, 8)) for m in means])
    y = np.repeat(np.arange(3), n_per)
    return x.astype(np.float32), y


def test_linear_svm_separable_blobs():
    xtr, ytr = _blobs(30, 0)
    xte, yte = _blobs(20, 1)
    res = linear_svm_eval(xtr, ytr, xte, yte, seeds=(0, 1, 2), c_grid=(0.01, 0.1, 1.0), cv=3)
    assert res["accuracy_mean"] > 0.85
    assert 0.0 <= res["accuracy_std"] < 0.05
    assert len(res["per_seed"]) == 3 and res["seeds"] == [0, 1, 2]
    assert res["C"] in (0.01, 0.1, 1.0) and set(res["cv_scores"]) == {0.01, 0.1, 1.0}
    assert res["n_train"] == 90 and res["n_test"] == 60


def test_c_is_picked_without_the_test_split():
    xtr, ytr = _blobs(30, 0)
    xte, yte = _blobs(20, 1)
    a = linear_svm_eval(xtr, ytr, xte, yte, seeds=(0,), c_grid=(0.001, 0.1, 10.0))
    b = linear_svm_eval(xtr, ytr, xte, np.zeros_like(yte), seeds=(0,), c_grid=(0.001, 0.1, 10.0))
    assert a["C"] == b["C"] and a["cv_scores"] == b["cv_scores"]


def test_svm_bad_inputs():
    xtr, ytr = _blobs(10, 0)
    with pytest.raises(FoundryInputError):
        linear_svm_eval(xtr, ytr[:-1], xtr, ytr)
    with pytest.raises(FoundryInputError):
        linear_svm_eval(xtr, ytr, xtr[:, :4], ytr)
    bad = xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FoundryInputError):
        linear_svm_eval(bad, ytr, xtr, ytr)


def test_extract_features_matches_forward(cloud):
    model = foundry.create_model("tiny")
    model.train()
    pts = torch.cat([cloud, cloud.flip(1)])  # 4 clouds
    feats = extract_features(model, pts.numpy(), batch_size=3)
    assert model.training  # mode restored
    assert feats.shape == (4, model.feature_dim) and feats.dtype == np.float32
    with torch.no_grad():
        ref = model.eval().forward_features(pts).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-5)
    with pytest.raises(FoundryInputError):
        extract_features(model, np.zeros((2, 256, 6), np.float32))
