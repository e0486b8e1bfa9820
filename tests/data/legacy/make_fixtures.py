"""Writes the files of tests/data/legacy with the code of the checkout it runs in.

Run once, with the code *before* the models/ re-layout (main at f78cda5), to keep files that runs in
flight hold: a tiny teacher, a distillation run stopped after epoch 1 (training_state.pt), the
student.safetensors the same run writes when it is not stopped, and the figures of
that student and of the stopped run resumed; the structure of a
pretraining state; and output figures of every shipped model on four bundled clouds.

    OMP_NUM_THREADS=1 python tests/data/legacy/make_fixtures.py
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import foundry  # noqa: E402
from legacy_setup import (SHIPPED, distill_args, figures, golden_clouds, legacy_student,  # noqa: E402
                          legacy_teacher, probe_cloud)
from foundry.train.distill import distill  # noqa: E402


def main():
    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher = legacy_teacher()
        foundry.save(teacher, HERE / "teacher.safetensors")
        teacher = foundry.load(HERE / "teacher.safetensors")
        full = legacy_student(teacher)
        distill(teacher, full, **distill_args(tmp / "full"))
        stopped = legacy_student(teacher)
        distill(teacher, stopped, **distill_args(tmp / "stopped", stop_after_epoch=1))
        run = HERE / "distill_run"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        shutil.copy(tmp / "stopped" / "training_state.pt", run / "training_state.pt")
        shutil.copy(tmp / "full" / "student.safetensors", run / "student.safetensors")
        x = probe_cloud()
        with torch.no_grad():
            out["full_student"] = figures(foundry.load(run / "student.safetensors"), x)
        shutil.copy(run / "training_state.pt", tmp / "stopped" / "training_state.pt")
        distill(teacher, legacy_student(teacher), **distill_args(tmp / "stopped", resume=True))
        with torch.no_grad():
            out["resumed_student"] = figures(foundry.load(tmp / "stopped" / "student.safetensors"), x)
        from foundry.train.common import read_training_state
        from foundry.train.pretrain import PretrainConfig, pretrain

        pretrain(PretrainConfig(preset="tiny", data=["synthetic:8"], epochs=1, batch_size=4, out=str(tmp / "pt"),
                                progress=False, max_steps=1, threads=1, decoder_depth=1))
        st = read_training_state(tmp / "pt" / "state.pt")
        out["pretrain_state"] = {"keys": sorted(st), "model": sorted(st["model"]),
                                 "groups": [len(g["params"]) for g in st["optimizer"]["param_groups"]],
                                 "run_config": json.loads(st["run_config"])}
    x = golden_clouds()
    with torch.no_grad():
        out["shipped"] = {name: figures(foundry.load(name), x) for name in SHIPPED}
    (HERE / "figures.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
