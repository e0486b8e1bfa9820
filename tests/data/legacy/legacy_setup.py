"""The models, run settings and figures shared by make_fixtures.py and tests/test_layout.py."""
import numpy as np
import torch

import foundry

SHIPPED = ("teacher-vits", "teacher-small", "foundry-vits-s16", "foundry-vits-s4", "foundry-vits-s1")
TEACHER = dict(num_points=128, num_groups=8, group_size=8, width=16, heads=2, depth=2, tokenizer_hidden=(4, 8, 16),
               pos_hidden=8)
STUDENT = dict(width=16, heads=2, depth=1, token_dim=16, tokenizer_hidden=(4, 8, 16), pos_hidden=8, cau_hidden=16,
               dso_key_dim=8, gate_hidden=8, num_supertokens=4, dso_seeding="fps", gate=True, extra_layers=[0])


def legacy_teacher():
    torch.manual_seed(0)
    return foundry.create_model("tiny", **TEACHER)


def legacy_student(teacher):
    from foundry.models.student import FoundryStudent, student_config_for

    torch.manual_seed(1)
    return FoundryStudent(student_config_for("foundry-tiny", teacher, teacher="legacy", **STUDENT))


def distill_args(out_dir, **kw):
    return dict(teacher_name="legacy", data=["synthetic:6"], out_dir=out_dir, epochs=2, batch_size=3, views=2,
                verbose=False, devices=1, **kw)


def probe_cloud():
    return torch.randn(2, 128, 3, generator=torch.Generator().manual_seed(3))


def golden_clouds():
    from foundry.data import load_arrays

    return torch.from_numpy(load_arrays("modelnet10", "test")["points"][[0, 100, 400, 800]])


def figures(model, x) -> dict:
    """Output figures of a model on clouds x: sums and leading values of features and tokens."""
    feats = model.forward_features(x).double()
    tokens, centers = model.forward_tokens(x)
    tokens = tokens.double()
    return {"feature_sum": float(feats.sum()), "feature_abs": float(feats.abs().sum()),
            "feature_head": np.round(feats[:, :6].numpy(), 6).tolist(),
            "token_sum": [float(v) for v in tokens.sum((1, 2))], "token_abs": float(tokens.abs().sum()),
            "token_sq": float(tokens.square().sum()), "center_sum": float(centers.double().sum())}
