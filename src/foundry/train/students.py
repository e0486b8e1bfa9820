"""Which student a distillation run trains: a preset built for its teacher, or a trained one."""
from __future__ import annotations

from ..api import load
from ..models.student import FoundryStudent
from ..models.student_config import STUDENT_PRESETS, student_config_for
from ..models.surgery import add_extra_layers, switch_dso_seeding
from ..validation import FoundryInputError


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
