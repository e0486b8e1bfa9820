import json

import pytest
import torch

import foundry
from foundry import FoundryInputError
from foundry.models.checkpoint import read_header


def test_round_trip_is_exact(tmp_path, cloud):
    model = foundry.create_model("tiny", qkv_bias=True).eval()
    path = foundry.save(model, tmp_path / "m.safetensors", info={"note": "test"})
    loaded = foundry.load(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.checkpoint_info == {"note": "test"}
    torch.testing.assert_close(loaded.forward_features(cloud), model.forward_features(cloud))


def test_header_describes_the_model(tmp_path):
    model = foundry.create_model("tiny")
    path = foundry.save(model, tmp_path / "m.safetensors")
    meta = read_header(path)
    assert meta["kind"] == "backbone" and meta["format_version"] == "1"
    assert meta["config"]["width"] == 32 and meta["foundry_version"] == foundry.__version__


def test_fp16_shipping_casts_back_to_fp32(tmp_path, cloud):
    model = foundry.create_model("tiny").eval()
    path = foundry.save(model, tmp_path / "m.safetensors", dtype=torch.float16)
    loaded = foundry.load(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    torch.testing.assert_close(loaded.forward_features(cloud), model.forward_features(cloud), atol=5e-2, rtol=5e-2)


def test_truncated_and_empty_files_are_refused(tmp_path):
    model = foundry.create_model("tiny")
    path = foundry.save(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FoundryInputError, match="truncated|corrupt"):
        foundry.load(tmp_path / "cut.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(FoundryInputError, match="empty"):
        foundry.load(tmp_path / "empty.safetensors")
    with pytest.raises(FoundryInputError, match="no model named"):
        foundry.load(tmp_path / "missing.safetensors")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    from safetensors.torch import save_file

    from foundry.models.checkpoint import load_checkpoint

    big = foundry.create_model("tiny", width=64, heads=2)
    path = foundry.save(big, tmp_path / "big.safetensors")
    # forge a header that claims the tiny config: the weights no longer fit
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps(foundry.create_model("tiny").config.to_dict())
    save_file(state, str(tmp_path / "forged.safetensors"), metadata=meta)
    with pytest.raises(FoundryInputError, match="do not fit the model"):
        foundry.load(tmp_path / "forged.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(FoundryInputError, match="not a Foundry checkpoint"):
        foundry.load(tmp_path / "foreign.safetensors")
    with pytest.raises(FoundryInputError, match="expected"):
        load_checkpoint(path, expect_kind="student")


def test_save_never_leaves_a_half_file(tmp_path, monkeypatch):
    import safetensors.torch as st

    model = foundry.create_model("tiny")
    path = foundry.save(model, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(RuntimeError):
        foundry.save(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
