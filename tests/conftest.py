import os
from pathlib import Path

import pytest
import torch

import foundry

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir():
    """../shared beside the clone (present in CI, absent in a user's fresh clone)."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside this clone")
    return SHARED


@pytest.fixture
def cloud():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 256, 3, generator=g)


@pytest.fixture(scope="session")
def teacher_path(tmp_path_factory):
    """A tiny random teacher (seed 0) saved once per test session."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "tiny.safetensors"
    foundry.save(foundry.create_model("tiny"), path)
    return path
