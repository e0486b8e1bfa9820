"""What the report's 3-D views colour each point by, computed from the models.

For a batch of clouds, per point:
- the SuperToken its patch joined (students with `forward_supertokens`);
- the student's error against the teacher on its patch's token (1 - cosine similarity), so one sees
  where on a shape the compression loses the teacher;
- part labels: ground truth, and the predictions of a part-segmentation head on the teacher's and
  on the student's tokens (the heads `foundry compare` trains and keeps, when given).

A point takes the value of its patch: the nearest patch centre.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.common import extract_tokens
from ..eval.partseg import load_head, predict
from ..models.heads import category_mask
from ..ops import knn

LABEL, VALUE = "label", "value"


def _per_point(points: torch.Tensor, centers: torch.Tensor, per_patch: torch.Tensor) -> np.ndarray:
    nearest = knn(points, centers, 1)[..., 0]  # (B, N): each point's patch
    return torch.gather(per_patch, 1, nearest).numpy()


@torch.no_grad()
def supertoken_of_points(student, points: torch.Tensor) -> np.ndarray | None:
    """(B, N) SuperToken index of each point, or None for a model without SuperTokens."""
    if not hasattr(student, "forward_supertokens"):
        return None
    st = student.forward_supertokens(points)
    return _per_point(points, st["centers"], st["assignment"].argmax(-1))


@torch.no_grad()
def token_error_of_points(student, teacher, points: torch.Tensor) -> np.ndarray | None:
    """(B, N) 1 - cosine between the student's and the teacher's token of each point's patch, or
    None when their tokens do not sit at the same patch centres."""
    s_tok, s_cen = student.forward_tokens(points)
    t_tok, t_cen = teacher.forward_tokens(points)
    if s_tok.shape != t_tok.shape or not torch.allclose(s_cen, t_cen, atol=1e-5):
        return None
    err = 1.0 - F.cosine_similarity(s_tok.float(), t_tok.float(), dim=-1)
    return _per_point(points, t_cen, err.float())


def part_predictions(head_file, model, label: str, points: np.ndarray, categories: np.ndarray,
                     category_parts: dict | None) -> np.ndarray:
    """(B, N) global part ids predicted by a saved partseg head on `model`'s tokens."""
    from safetensors import safe_open

    with safe_open(str(head_file), framework="pt") as f:  # which layers the head reads (concatenated)
        layers = json.loads((f.metadata() or {}).get("meta", "{}")).get("layers")
    head, meta = load_head(head_file, token_width=model.token_dim * (len(layers) if layers else 1), model_name=label)
    tok, cen = extract_tokens(model, points, meta.get("layers"), 8, "cpu")
    mask = category_mask(category_parts, head.hparams["num_categories"], head.hparams["num_parts"])
    return predict(head, tok, cen, points, categories, mask, 8, "cpu")


def local_part_ids(parts: np.ndarray, category_parts: dict | None) -> np.ndarray:
    """Global part ids -> their index within the category, so each category's parts differ clearly."""
    if not category_parts:
        return parts
    local = {int(g): i for ids in category_parts.values() for i, g in enumerate(ids)}
    return np.vectorize(lambda g: local.get(int(g), 0))(parts)


def cloud_views(student, teacher, points: np.ndarray, titles: list[str], *, student_label: str = "student",
                teacher_label: str = "teacher", parts: np.ndarray | None = None, categories: np.ndarray | None = None,
                category_parts: dict | None = None, teacher_head=None, student_head=None) -> dict:
    """The panels of the report's 3-D view: {"clouds": [{"title", "points"}], "panels": [{"name",
    "kind" (label | value), "values": (B, N)}]}; panels that cannot be computed are left out."""
    pts = torch.from_numpy(np.asarray(points, dtype=np.float32))
    panels = []
    st = supertoken_of_points(student, pts)
    if st is not None:
        panels.append({"name": "student: SuperToken", "kind": LABEL, "values": st})
    err = token_error_of_points(student, teacher, pts)
    if err is not None:
        panels.append({"name": "student: token error (1 - cos)", "kind": VALUE, "values": err})
    if parts is not None:
        panels.append({"name": "parts: ground truth", "kind": LABEL, "values": local_part_ids(parts, category_parts)})
        for role, label, model, head in (("teacher", teacher_label, teacher, teacher_head),
                                         ("student", student_label, student, student_head)):
            if head is not None:
                pred = part_predictions(head, model, label, np.asarray(points), categories, category_parts)
                acc = 100.0 * (pred == parts).mean()
                panels.append({"name": f"parts: {role} ({acc:.0f}% right)", "kind": LABEL,
                               "values": local_part_ids(pred, category_parts)})
    return {"clouds": [{"title": t, "points": np.asarray(p)} for t, p in zip(titles, points)], "panels": panels}
