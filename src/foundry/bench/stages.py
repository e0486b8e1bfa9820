"""Time and peak RAM of each stage of one forward call, for teachers and students alike.

Stages: "fps" and "knn" (the patch grouping, from `hooks.watch_grouping`), then the model's
top-level modules mapped to "tokenizer", "gate", "dso", "encoder" and "cau" (a teacher's
patch_embed/reduce are its tokenizer, its pos_embed/encoder/norm its encoder); "other" is the
rest of the call (glue between modules). Grouping inside the tokenizer is taken out of the
tokenizer's time; the FPS that seeds the DSO queries stays in "dso".

Memory: the kernel's resident high-water mark is reset at every module boundary (Linux
/proc/self/clear_refs), so each stage's figure is the peak extra RAM, over the RSS before the
call, reached while that stage ran ("between" for what runs outside the top-level modules, e.g. a
teacher's grouping). Unavailable (None) where the reset is not possible.
"""
from __future__ import annotations

import contextlib
import time

from .hooks import watch_grouping

STAGE_OF_CHILD = {"tokenizer": "tokenizer", "patch_embed": "tokenizer", "reduce": "tokenizer", "gate": "gate",
                  "dso": "dso", "encoder": "encoder", "pos_embed": "encoder", "norm": "encoder", "cau": "cau"}
TIMED_STAGES = ("fps", "knn", "tokenizer", "gate", "dso", "encoder", "cau", "other")


class StageTimer:
    """Use `with timer.watch(model): model(points)`; then `timer.seconds` and `timer.peak_mb`."""

    def __init__(self, rss_kb=None, hwm_kb=None, reset_hwm=None):
        self._rss, self._hwm, self._reset = rss_kb, hwm_kb, reset_hwm
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._active: str | None = None
        self._start = 0.0
        self._base_kb = None
        self._group_depth = 0

    def _add(self, stage, dt):
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def _boundary(self):
        """Close the memory segment of the stage that was running."""
        if self._hwm is None or self._base_kb is None:
            return
        hwm = self._hwm()
        if hwm is not None:
            label = self._active or "between"
            self.peak_mb[label] = max(self.peak_mb.get(label, 0.0), (hwm - self._base_kb) / 1024)
        self._reset()

    def _pre(self, name):
        def hook(module, args):
            self._boundary()
            self._active, self._start = STAGE_OF_CHILD.get(name, "other"), time.perf_counter()
        return hook

    def _post(self, module, args, out):
        self._boundary()
        self._add(self._active, time.perf_counter() - self._start)
        self._active = None

    def _grouping_enter(self, name):
        if name != "group_patches":  # the wrapper of FPS + kNN: its parts are counted
            self._group_depth += 1

    def _grouping_exit(self, name, result, seconds):
        if name == "group_patches":
            return
        self._group_depth -= 1
        if self._group_depth or self._active == "dso":
            return
        stage = "fps" if name == "farthest_point_sample" else "knn"
        self._add(stage, seconds)
        if self._active is not None:  # inside the tokenizer module: not the tokenizer's own time
            self._add(self._active, -seconds)

    @contextlib.contextmanager
    def watch(self, model, sync=None):
        """Hooks on `model`'s top-level modules and on the grouping functions for one call."""
        hooks = []
        for name, child in model.named_children():
            hooks.append(child.register_forward_pre_hook(self._pre(name)))
            hooks.append(child.register_forward_hook(self._post))
        self._base_kb = self._rss() if self._rss is not None else None
        if self._reset is not None and not self._reset():
            self._hwm = None
        t0 = time.perf_counter()
        try:
            with watch_grouping(self._grouping_enter, self._grouping_exit, sync=sync):
                yield self
            if sync is not None:
                sync()
        finally:
            total = time.perf_counter() - t0
            self._boundary()
            for h in hooks:
                h.remove()
        self.seconds["total"] = total
        self.seconds["other"] = total - sum(v for k, v in self.seconds.items() if k not in ("total", "other"))
        if self.peak_mb:
            self.peak_mb["total"] = max(self.peak_mb.values())


def format_stages(records: list[dict]) -> str:
    """Per-stage seconds (and peak MB where known) of scaling/worker records that carry "stages"."""
    head = f"{'model':<18} {'points':>9} " + " ".join(f"{s:>9}" for s in TIMED_STAGES) + f" {'total s':>9}"
    lines = [head]
    for r in records:
        st = r.get("stages")
        if not st:
            continue
        sec = st["seconds"]
        lines.append(f"{str(r['model'])[:18]:<18} {r['points']:>9} "
                     + " ".join(f"{sec[s]:9.3f}" if s in sec else f"{'-':>9}" for s in TIMED_STAGES)
                     + f" {sec['total']:9.3f}")
        mem = st.get("peak_mb") or {}
        if mem:
            lines.append(f"{'  peak MB':<18} {'':>9} " + " ".join(
                f"{mem[s]:9.0f}" if s in mem else f"{'':>9}" for s in TIMED_STAGES) + f" {mem.get('total', 0):9.0f}")
    return "\n".join(lines)
