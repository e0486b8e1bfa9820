"""DDP tested, not only claimed: `foundry pretrain` and `foundry distill` on 2 CPU processes (gloo).

One launch of tests/ddp_worker.py (Lightning Fabric starts rank 1 itself, as it does for the README's
`--devices N --strategy ddp` commands) runs a full and an interrupted-then-resumed run of each trainer.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import foundry
from foundry.io import weights_fingerprint as model_fingerprint

WORKER = Path(__file__).with_name("ddp_worker.py")
RUNS = ("pretrain_full", "pretrain_resumed", "distill_full", "distill_resumed")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    out = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    foundry.save(foundry.create_model("tiny"), out / "teacher.safetensors")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(foundry.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    for k in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, str(WORKER), str(out)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return out, ranks


def test_both_ranks_end_with_identical_weights(ddp):
    out, (r0, r1) = ddp
    assert r0["rc"] == r1["rc"] == {"pretrain_full": 0, "pretrain_part": 0, "pretrain_resumed": 0,
                                    "distill_full": 0, "distill_part": 130, "distill_resumed": 0}
    for run in RUNS:
        assert r0["weights"][run] == r1["weights"][run], run
    # and rank 0 saved exactly those weights
    assert model_fingerprint(foundry.load(out / "pretrain_full" / "encoder.safetensors")) == r0["weights"]["pretrain_full"]
    assert model_fingerprint(foundry.load(out / "distill_full" / "student.safetensors")) == r0["weights"]["distill_full"]


def test_resume_under_ddp_is_exact(ddp):
    _, (r0, _) = ddp
    assert r0["weights"]["pretrain_part"] != r0["weights"]["pretrain_full"]  # the interruption was real
    assert r0["weights"]["pretrain_resumed"] == r0["weights"]["pretrain_full"]
    assert r0["weights"]["distill_part"] != r0["weights"]["distill_full"]
    assert r0["weights"]["distill_resumed"] == r0["weights"]["distill_full"]


def test_token_cache_is_built_once_by_one_rank(ddp):
    out, (r0, r1) = ddp
    assert sorted(r0["builds"]) == ["distill_full/token_cache", "distill_resumed/token_cache"]
    assert r1["builds"] == []
    header = json.loads((out / "distill_full" / "token_cache" / "header.json").read_text())
    assert header["shapes"]["tokens"][:2] == [2, 7]  # both views of all 7 clouds, shared by the ranks


def test_only_rank_zero_writes_metrics_and_checkpoints(ddp):
    out, (r0, r1) = ddp
    own = {"rank0.json.tmp", "rank1.json.tmp"}
    assert [w for w in r1["writes"] if w not in own] == []
    written = set(r0["writes"])
    for run in ("pretrain_full", "distill_full"):
        assert any(w.startswith(f"{run}/metrics.csv") for w in written)
    assert "distill_full/student.safetensors" in written and "pretrain_full/encoder.safetensors" in written
    # one row per logged step: nothing logged twice
    import csv

    for run in ("pretrain_full", "pretrain_resumed", "distill_resumed"):
        with open(out / run / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("loss")]
        steps = [r["step"] for r in rows]
        assert len(steps) == len(set(steps)) and steps, run
