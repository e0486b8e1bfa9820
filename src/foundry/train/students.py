"""Which student a distillation run trains (a preset built for its teacher, or a trained one), and the
checks that a teacher can teach it."""
from __future__ import annotations

import torch

from ..api import load
from ..models.student import FoundryStudent
from ..models.student_config import STUDENT_PRESETS, student_config_for
from ..models.surgery import add_extra_layers, init_from_teacher, switch_dso_seeding
from ..validation import FoundryInputError


def check_teacher(teacher, name: str = "the teacher") -> None:
    """Refuse a model that cannot serve as a teacher (a student, a wrapper without a backbone config)."""
    kind = getattr(teacher, "kind", type(teacher).__name__)  # any module may be handed in here
    if kind == "student" or not hasattr(getattr(teacher, "config", None), "pooling"):
        raise FoundryInputError(f"{name} is a '{kind}' model, which cannot be a teacher: give a pretrained backbone "
                                "(teacher-vits, teacher-small, a `foundry pretrain` encoder or an official checkpoint)")


def check_compatible(teacher, student) -> None:
    """Refuse a student that cannot reconstruct this teacher's tokens."""
    check_teacher(teacher)
    c = student.config
    if c.teacher_width != teacher.token_dim:
        raise FoundryInputError(
            f"width mismatch: the student reconstructs {c.teacher_width}-d tokens but the teacher's tokens are "
            f"{teacher.token_dim}-d; build the student for this teacher (foundry distill sets teacher_width from the "
            "teacher) or pick the teacher it was made for")
    tc = teacher.config
    for f in ("num_groups", "group_size", "fps_start", "patch_order"):
        if getattr(c, f) != getattr(tc, f):
            raise FoundryInputError(f"patch mismatch: student {f}={getattr(c, f)!r} but teacher {f}={getattr(tc, f)!r}; "
                                    "the student's tokens must sit at the teacher's patch centres")


def build_student(name_or_path: str, teacher, teacher_name: str, overrides: dict, extra_layers=None):
    """The student `foundry distill --student` names: a fresh one of a preset (config fields from
    `overrides`), or a trained checkpoint to continue, with its DSO queries switched when
    `overrides` set dso_seeding / dso_spatial_init and more output layers when `extra_layers`. A
    continued student carries the chain of commands that made it (`continued_from`)."""
    if name_or_path in STUDENT_PRESETS:
        if extra_layers:
            overrides = {**overrides, "extra_layers": list(extra_layers)}
        try:
            cfg = student_config_for(name_or_path, teacher, teacher=teacher_name, **overrides)
        except ValueError as exc:
            raise FoundryInputError(str(exc)) from exc
        return FoundryStudent(cfg)
    model = load(name_or_path)
    if model.kind != "student":
        raise FoundryInputError(f"--student {name_or_path!r} is neither a student preset ({sorted(STUDENT_PRESETS)}) "
                                "nor a student checkpoint")
    switchable = {"dso_seeding", "dso_spatial_init"}
    if set(overrides) - switchable:
        raise FoundryInputError(f"--set {sorted(set(overrides) - switchable)} cannot change the trained student "
                                f"{name_or_path!r}; on a checkpoint only {sorted(switchable)} can be set (switching DSO's "
                                "SuperToken queries); start from a preset to change the architecture")
    if overrides:
        info = getattr(model, "checkpoint_info", {})
        try:
            model = switch_dso_seeding(model, overrides.get("dso_seeding", model.config.dso_seeding),
                                       overrides.get("dso_spatial_init"))
        except ValueError as exc:  # the config's own check names the allowed values
            raise FoundryInputError(str(exc)) from exc
        model.checkpoint_info = info
    if extra_layers:
        info = getattr(model, "checkpoint_info", {})
        try:
            model = add_extra_layers(model, extra_layers)
        except ValueError as exc:
            raise FoundryInputError(str(exc)) from exc
        model.checkpoint_info = info
    prev = getattr(model, "checkpoint_info", {}) or {}
    step = {"checkpoint": str(name_or_path), "epochs": prev.get("epochs"), "command": prev.get("command"),
            "wall_time_s": prev.get("wall_time_s"), "final_loss": prev.get("final_loss")}
    # the whole chain of commands that made this student, oldest first
    chain = list(prev.get("command_chain") or []) or ([{k: v for k, v in step.items() if k != "checkpoint"}]
                                                      if prev.get("command") else [])
    model.continued_from = {"continued_from": step, "command_chain": chain}
    return model.train()


def student_for_run(student: str, teacher, teacher_name: str, overrides: dict, *, extra_layers=None,
                    init_tokenizer: bool = False, init_encoder: str = "none", freeze_encoder: bool = False,
                    seed: int = 0):
    """The student a `foundry distill` run trains, ready: built or continued (`build_student`, its
    initialisation drawn from `seed`), checked against the teacher, and with the teacher's
    tokenizer / blocks copied in where asked (init_encoder "first" / "spread", optionally frozen)."""
    overrides = dict(overrides)
    if init_tokenizer:
        tc = teacher.config
        overrides.setdefault("tokenizer", "teacher")
        overrides.setdefault("tokenizer_hidden", list(tc.tokenizer_hidden))
        overrides.setdefault("token_dim", tc.tokenizer_width or tc.width)
    torch.manual_seed(seed)
    model = build_student(student, teacher, teacher_name, overrides, extra_layers)
    if getattr(model, "feature_align", None) is not None:  # training would leave the fitted map stale
        raise FoundryInputError(f"{student} carries a fitted feature alignment (`foundry align`); continue the "
                                "distillation from the student it was made from, then align again")
    check_compatible(teacher, model)
    if init_tokenizer or init_encoder != "none" or freeze_encoder:
        init_from_teacher(model, teacher, tokenizer=init_tokenizer or None,
                          encoder_blocks=None if init_encoder == "none" else init_encoder,
                          freeze_encoder=freeze_encoder)
    return model
