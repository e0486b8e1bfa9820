"""scripts/shards.py: split + join round trip of a checkpoint; missing / corrupt / mixed parts are refused."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "shards.py"
_spec = importlib.util.spec_from_file_location("foundry_shards_script", SCRIPT)
shards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shards)


@pytest.fixture
def checkpoint(tmp_path):
    from foundry import create_model, save

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save(create_model("tiny"), path)
    return path


def _split(checkpoint, out_dir, max_bytes=40_000):
    return shards.split_many([checkpoint], out_dir, max_bytes=max_bytes)["files"][0]


def test_split_join_round_trip_is_bit_exact(checkpoint, tmp_path):
    entry = _split(checkpoint, tmp_path / "parts")
    parts = sorted((tmp_path / "parts").glob("tiny.safetensors.part*"))
    assert entry["count"] == len(parts) >= 3
    assert all(p.stat().st_size <= 40_000 for p in parts)
    out = shards.join_parts(list(reversed(parts)), tmp_path / "back" / "joined.safetensors")  # any order
    assert out.read_bytes() == checkpoint.read_bytes()
    from foundry import load

    model = load(out)  # the joined file is a working checkpoint
    assert model.forward_features(torch.rand(1, 256, 3)).shape[0] == 1
    # joining into a folder keeps the original name; an identical file already there is fine
    assert shards.join_parts(parts, tmp_path / "back").name == "tiny.safetensors"
    assert shards.join_parts(parts, tmp_path / "back").read_bytes() == checkpoint.read_bytes()


def test_missing_corrupt_and_foreign_parts_are_refused(checkpoint, tmp_path):
    _split(checkpoint, tmp_path / "parts")
    parts = sorted((tmp_path / "parts").glob("tiny.safetensors.part*"))
    target = tmp_path / "joined.safetensors"

    with pytest.raises(shards.ShardError, match=r"missing 1 of the \d+ parts .*tiny\.safetensors\.part2of"):
        shards.join_parts([parts[0]] + parts[2:], target)
    assert not target.exists()

    bad = tmp_path / "bad" / parts[1].name
    bad.parent.mkdir()
    data = bytearray(parts[1].read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the payload
    bad.write_bytes(bytes(data))
    with pytest.raises(shards.ShardError, match="corrupt.*sha256"):
        shards.join_parts([parts[0], bad] + parts[2:], target)
    bad.write_bytes(parts[1].read_bytes()[:-100])  # truncated
    with pytest.raises(shards.ShardError, match="truncated"):
        shards.join_parts([parts[0], bad] + parts[2:], target)
    with pytest.raises(shards.ShardError, match="not a part"):
        shards.join_parts([checkpoint], target)

    other = tmp_path / "other.safetensors"
    other.write_bytes(checkpoint.read_bytes()[::-1])
    shards.split_many([other], tmp_path / "other", max_bytes=40_000)
    with pytest.raises(shards.ShardError, match="one file at a time"):
        shards.join_parts(parts + [next((tmp_path / "other").glob("*.part1of*"))], target)
    assert not target.exists()

    # the command line says what is wrong and exits non-zero
    r = subprocess.run([sys.executable, str(SCRIPT), "join", str(parts[0]), str(target)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "error: missing" in r.stderr


def test_split_respects_file_and_byte_totals(checkpoint, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    m = shards.split_many([checkpoint, small], tmp_path / "parts", max_bytes=40_000, max_files=2)
    assert [e["name"] for e in m["files"]] == ["small.bin"]  # the checkpoint needs more than 2 parts
    assert m["left_out"][0]["name"] == "tiny.safetensors" and "max-files" in m["left_out"][0]["why"]
    m = shards.split_many([small], tmp_path / "parts2", max_total=500)
    assert m["files"] == [] and "max-total" in m["left_out"][0]["why"]
