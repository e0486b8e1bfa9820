"""Weight surgery on students: start from a teacher's weights, switch DSO's query mode, add
output heads for more teacher blocks. Each returns or edits a student and keeps every other
weight as it was."""
from __future__ import annotations

import torch

from ..validation import FoundryInputError
from .backbone import PointTransformer
from .student import FoundryStudent


def init_from_teacher(student: FoundryStudent, teacher: PointTransformer, *, tokenizer: bool | None = None,
                      encoder_blocks: list[int] | str | None = None, freeze_encoder: bool = False) -> None:
    """Copy teacher weights into the student. tokenizer: copy the mini-PointNet (needs
    tokenizer='teacher' and the teacher's tokenizer shape; default: when the shapes allow).
    encoder_blocks: teacher block indices for the student's blocks ("first", "spread" = evenly
    spaced, or a list); needs width == teacher width. freeze_encoder: stop training the blocks."""
    c = student.config
    if not isinstance(teacher, PointTransformer):
        raise FoundryInputError("init_from_teacher needs a PointTransformer teacher")
    tc = teacher.config
    can_tok = (c.tokenizer == "teacher" and tuple(tc.tokenizer_hidden) == c.tokenizer_hidden
               and (tc.tokenizer_width or tc.width) == c.token_dim)
    if tokenizer is None:
        tokenizer = can_tok
    if tokenizer:
        if not can_tok:
            raise FoundryInputError("the student's tokenizer does not have the teacher's shape; use tokenizer='teacher' "
                                    f"with tokenizer_hidden={tuple(tc.tokenizer_hidden)} and token_dim={tc.tokenizer_width or tc.width}")
        student.tokenizer.patch_embed.load_state_dict(teacher.patch_embed.state_dict())
        c.tokenizer_init = f"teacher:{c.teacher}"
    if encoder_blocks is not None:
        if c.width != tc.width or c.heads != tc.heads or c.qkv_bias != tc.qkv_bias or c.mlp_ratio != tc.mlp_ratio:
            raise FoundryInputError("encoder init from the teacher needs the teacher's width, heads, qkv_bias and mlp_ratio")
        if encoder_blocks == "first":
            encoder_blocks = list(range(c.depth))
        elif encoder_blocks == "spread":
            encoder_blocks = [round(i * (tc.depth - 1) / max(1, c.depth - 1)) for i in range(c.depth)]
        if len(encoder_blocks) != c.depth:
            raise FoundryInputError(f"need {c.depth} teacher blocks, got {encoder_blocks}")
        for mine, theirs in zip(student.encoder.blocks.blocks, encoder_blocks):
            mine.load_state_dict(teacher.encoder.blocks[theirs].state_dict())
        student.encoder.norm.load_state_dict(teacher.norm.state_dict())
        c.encoder_init = f"teacher:{c.teacher}:blocks{list(encoder_blocks)}"
    if freeze_encoder:
        for p in student.encoder.blocks.parameters():
            p.requires_grad_(False)
        c.freeze_encoder = True


def switch_dso_seeding(student: FoundryStudent, seeding: str, spatial_init: float | None = None) -> FoundryStudent:
    """A copy of a trained DSO student whose SuperToken queries are switched to `seeding`
    ("learned" or "fps"): tokenizer, encoder, CAU and DSO keys/queries keep their weights, the
    learned query vectors restart (std 0.02 for "fps", 1.0 for "learned", torch seed 0) and the
    spatial prior is added or dropped. For continuing a trained student with the other query mode."""
    c = student.config
    if c.compression != "dso":
        raise FoundryInputError(f"only a DSO student has SuperToken queries to switch (this one uses {c.compression!r})")
    name = c.name.removesuffix("-learned") if seeding == "fps" else (
        c.name if c.name.endswith("-learned") else f"{c.name}-learned")
    cfg = c.replace(dso_seeding=seeding, name=name,
                    dso_spatial_init=c.dso_spatial_init if spatial_init is None else spatial_init)
    new = FoundryStudent(cfg)
    missing, unexpected = new.load_state_dict(student.state_dict(), strict=False)
    if (set(missing) | set(unexpected)) - {"dso.spatial_logit"}:
        raise RuntimeError(f"switching DSO seeding changed more than the spatial prior: {missing}, {unexpected}")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        new.dso.reset_queries()
    return new.to(next(student.parameters()).device)


def add_extra_layers(student: FoundryStudent, layers) -> FoundryStudent:
    """A copy of a trained student that also reproduces teacher blocks `layers`: every weight is
    kept, and each new block's output MLP starts as a copy of the target layer's (so it starts
    from the deepest reconstruction and only has to learn the difference)."""
    c = student.config
    new_layers = sorted({int(x) for x in layers} - set(c.extra_layers))
    cfg = c.replace(extra_layers=tuple(sorted(set(c.extra_layers) | set(new_layers))))
    new = FoundryStudent(cfg)
    missing, unexpected = new.load_state_dict(student.state_dict(), strict=False)
    if unexpected or any(not k.startswith("cau.layer_mlps.") for k in missing):
        raise RuntimeError(f"adding output layers changed more than the new heads: {missing}, {unexpected}")
    for x in new_layers:
        new.cau.layer_mlps[str(x)].load_state_dict(student.cau.mlp.state_dict())
    return new.to(next(student.parameters()).device)
