"""MACs and FLOPs per stage through PyTorch's own FLOP formulas (torch.utils.flop_counter).

Conventions (state them with every number):
- FLOPs count a multiply-add as 2; MACs = FLOPs / 2.
- Only matmul-like ops are counted (mm, addmm, bmm, baddbmm, convolution and attention kernels),
  with the formulas of `torch.utils.flop_counter.flop_registry`. Norms, activations, softmax
  normalisation, max-pooling and FPS/top-k comparisons are not MACs and are not counted; the kNN
  distance matmul is counted (in the "grouping" stage): the count runs the brute force
  (`ops.knn.brute_force_knn`) where a real call on CPU takes a k-d tree, so figures keep one definition.
- PyTorch's registry has no formula for the CPU flash-attention kernel
  (`aten._scaled_dot_product_flash_attention_for_cpu`), so `FlopCounterMode` silently counts zero
  attention FLOPs on CPU; we add the same formula the registry uses for the CUDA kernels.
- Numbers are for the batch and point count given; divide by the batch for per-cloud figures.

Stages: grouping (FPS + kNN, wherever it is called), tokenizer, gate, dso, encoder, cau, other.
Top-level modules map to stages by name (`MODULE_STAGES`); unknown names go to "other", and so
does anything counted outside a top-level module and outside the grouping ("(root)" in
`by_module`; e.g. the student's `assignment @ encoded` upsampling product).
"""
from __future__ import annotations

import contextlib
import inspect

import torch
from torch.utils import flop_counter as _fc
from torch.utils._python_dispatch import TorchDispatchMode

from ..models.backbone import PointTransformer
from ..models.baselines import ToMeTeacher
from ..ops.knn import brute_force_knn
from .hooks import watch_grouping

STAGES = ("grouping", "tokenizer", "gate", "dso", "encoder", "cau", "other")

MODULE_STAGES = {
    # backbone (teacher)
    "patch_embed": "tokenizer",
    "reduce": "tokenizer",
    "pos_embed": "encoder",
    "encoder": "encoder",
    "norm": "encoder",
    # student
    "tokenizer": "tokenizer",
    "gate": "gate",
    "dso": "dso",
    "cau": "cau",
}

ROOT = "(root)"


def stage_of(module_name: str) -> str:
    """Stage of a module name or dotted path (its last part decides; "grouping" and unknown names
    handled too)."""
    if module_name == "grouping":
        return "grouping"
    return MODULE_STAGES.get(module_name.rsplit(".", 1)[-1], "other")


def place_of(path: str) -> str:
    """Where FLOPs of module `path` are booked: the path up to its first stage-named part
    ("teacher.encoder.blocks.0.attn" -> "teacher.encoder", "cau.norm" -> "cau"), else its
    top-level name ("head.fc" -> "head")."""
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part in MODULE_STAGES:
            return ".".join(parts[: i + 1])
    return parts[0]


def _cpu_flash_sdpa_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query.shape, key.shape, value.shape)


def _formulas() -> dict:
    table = dict(_fc.flop_registry)
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None and cpu_flash not in table:
        table[cpu_flash] = _cpu_flash_sdpa_flops
    return table


class _StageCounter(TorchDispatchMode):
    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.formulas = _formulas()
        self.flops: dict[str, int] = {}
        self.by_op: dict[str, dict[str, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            n = int(formula(*args, **kwargs, out_val=out))
            where = self.stack[-1]
            self.flops[where] = self.flops.get(where, 0) + n
            ops = self.by_op.setdefault(where, {})
            name = str(func._overloadpacket)
            ops[name] = ops.get(name, 0) + n
        return out


def _owner_module(fn):
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


def count_flops(fn, *args, **kwargs) -> tuple[int, dict[str, int]]:
    """Run fn(*args, **kwargs) without gradients under the counter.

    Returns (total FLOPs, FLOPs per place): places are the submodules of the model `fn` is bound
    to, cut at the first stage-named part of their path (`place_of`: "patch_embed", "encoder",
    "teacher.encoder" inside a wrapper, "head" for an unknown top-level name), "grouping" for
    FPS + kNN, and "(root)" for the rest.
    """

    model = _owner_module(fn)
    stack = [ROOT]
    handles = []

    def push(name):
        stack.append(name)  # hooks must return None, or they would replace inputs/outputs

    def pop(*_):
        stack.pop()

    if model is not None:
        # every submodule pushes the place it books to, so wrappers that call inner blocks directly
        # (not through their parent's forward) are still attributed to the right stage
        for path, sub in model.named_modules():
            if path:
                handles.append(sub.register_forward_pre_hook(lambda m, a, _p=place_of(path): push(_p)))
                handles.append(sub.register_forward_hook(lambda m, a, o: pop()))
    counter = _StageCounter(stack)
    try:
        with watch_grouping(on_enter=lambda _name: push("grouping"), on_exit=pop), brute_force_knn(), counter, \
                torch.no_grad():
            fn(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return int(sum(counter.flops.values())), dict(counter.flops)


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@contextlib.contextmanager
def patch_count(model, method: str, num_groups: int | None):
    """Yields the kwargs that make `model.<method>` use `num_groups` patches.

    The backbone, the student and the ToMe wrapper take `num_groups=` as an argument. A model whose
    method does not is assumed to read `config.num_groups` at call time; then the config field is
    set for the duration of the block and restored afterwards.
    """
    default = getattr(model.config, "num_groups", None)
    if num_groups is None or num_groups == default:
        yield {}
        return
    if _accepts(getattr(model, method), "num_groups"):
        yield {"num_groups": int(num_groups)}
        return
    if default is None:
        raise TypeError(f"{type(model).__name__}.{method} takes no num_groups and has no config.num_groups")
    model.config.num_groups = int(num_groups)
    try:
        yield {}
    finally:
        model.config.num_groups = default


def random_cloud(batch: int, num_points: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """A seeded (batch, num_points, 3) Gaussian cloud scaled into the unit ball, for cost figures."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(batch, num_points, 3, generator=g)
    pts = pts / pts.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True).clamp_min(1e-9)
    return pts.to(device)


def stage_costs(model, num_points: int | None = None, batch: int = 1, *, num_groups: int | None = None,
                method: str = "forward_features", seed: int = 0) -> dict:
    """MACs and FLOPs per stage of one `model.<method>(points)` call at a stated batch and size.

    Returns {"batch", "points", "num_groups", "method", "flops": {stage: n}, "macs": {stage: n},
    "total_flops", "total_macs", "by_module": {top-level name: FLOPs}, "convention": str}.
    """
    n = num_points or getattr(model.config, "num_points", 1024)
    fn = getattr(model, method)
    was_training = model.training
    model.eval()
    try:
        with patch_count(model, method, num_groups) as kwargs:
            total, per_module = count_flops(fn, random_cloud(batch, n, seed), **kwargs)
    finally:
        model.train(was_training)
    flops = {s: 0 for s in STAGES}
    for name, value in per_module.items():
        flops[stage_of(name)] += value
    return {
        "batch": batch,
        "points": n,
        "num_groups": num_groups,
        "method": method,
        "flops": flops,
        "macs": {s: v // 2 for s, v in flops.items()},
        "total_flops": total,
        "total_macs": total // 2,
        "by_module": per_module,
        "convention": "FLOPs = 2 x MACs; matmul-like ops only (torch.utils.flop_counter formulas + CPU "
                      "flash attention); totals for the whole batch",
    }


def model_macs(model, num_points: int | None = None, batch: int = 1, seed: int = 0) -> int:
    """MACs of one `forward_features` call on a random (batch, num_points, 3) cloud."""
    return stage_costs(model, num_points, batch, seed=seed)["total_macs"]


def tome_r_for_macs(teacher: PointTransformer, target_macs: int, name: str = "") -> tuple[int, int]:
    """The smallest per-block merge count r whose MACs at the teacher's input size are <= target
    (or the most aggressive r when none is). Returns (r, macs)."""
    g = teacher.config.num_groups
    best = None
    for r in range(0, g):
        macs = model_macs(ToMeTeacher.wrap(teacher, r, name))
        best = (r, macs)
        if macs <= target_macs:
            break
    return best
