"""Load the checkpoints published with Point-MAE, Point-BERT, Point-JEPA and PointGPT into
Foundry's `PointTransformer`.

Each official project stores its encoder under its own key names. This module reads a file
(`torch.load(..., weights_only=True)`), unwraps the container (`base_model`, `state_dict`,
`model`), drops `module.` prefixes (DataParallel / DDP), detects which layout it is, maps the
encoder's keys onto Foundry's, casts fp16/bf16 to fp32 and turns Conv1d (O, I, 1) weights into
Linear (O, I) weights. Heads, decoders and pretraining-only parts are ignored (and counted).

Supported layouts (names as reported in `model.checkpoint_info["layout"]`):

- ``point-mae-pretrain``: `MAE_encoder.{encoder,pos_embed,blocks.blocks,norm}`; no cls token;
  features = mean+max of the final-norm patch tokens (the linear-SVM protocol).
- ``point-mae-finetune``: `{encoder,pos_embed,blocks.blocks,norm,cls_token,cls_pos}` (+
  `cls_head_finetune`); features = cls + max.
- ``point-bert-pretrain``: the MoCo file; the query branch `transformer_q.*` (tokenizer
  `encoder.*` to 256-d, then `reduce_dim` 256 -> 384, `cls_token`/`cls_pos`); features = cls + max.
- ``point-bert-finetune``: `{encoder,reduce_dim,cls_token,cls_pos,pos_embed,blocks.blocks,norm}`.
- ``point-jepa-pretrain``: a Lightning `state_dict` with `tokenizer.embedding.encoder.*` (first
  conv of each mini-PointNet MLP without bias), `positional_encoding.*`, `student.blocks.*` (qkv
  with bias), `student.norm`; features = mean+max.
- ``point-jepa-finetune``: the same with `encoder.*` in place of `student.*`.
- ``pointgpt-pretrain`` / ``pointgpt-finetune`` (PointGPT-S): `GPT_Transformer.{encoder,blocks,sos_pos}`
  or top-level `{encoder,blocks,cls_token,cls_pos,sos_pos}`; `blocks.layers.N` are
  nn.MultiheadAttention blocks whose residual starts from the *normed* input, fixed interleaved
  sine/cosine positions, a start-of-sequence token, a causal mask and a nearest-neighbour chain
  patch order. These do not fit the pre-LN `PointTransformer`, so they load into
  `PointGPTTransformer` (kind "pointgpt", `foundry.models.pointgpt`, same model API). PointGPT-B/L (the
  larger 3-layer tokenizer) are refused with an explanation.

The number of attention heads and the grouping (num_groups, group_size) are not stored in the
weights; they default to the official ViT-S settings (width / 64 heads, 64 groups of 32 points
at 1024 points) and can be overridden by keyword: `load_official(path, heads=..., num_groups=...)`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..validation import FoundryInputError, check_checkpoint_file
from .backbone import PointTransformer
from .checkpoint import load_state_strict, save_checkpoint
from .config import BackboneConfig
from .pointgpt import PointGPTConfig, PointGPTTransformer

# layout -> (encoder key prefix, spec). Spec names the sub-prefixes of each part.
_LAYOUTS = {
    "point-mae-pretrain": dict(root="MAE_encoder.", tok="encoder.", pos="pos_embed.", blocks="blocks.blocks.",
                               norm="norm.", reduce=None, cls=False, qkv_bias=None, pooling="mean+max",
                               project="Point-MAE (Pang et al., 2022), pretraining checkpoint"),
    "point-mae-finetune": dict(root="", tok="encoder.", pos="pos_embed.", blocks="blocks.blocks.", norm="norm.",
                               reduce=None, cls=True, qkv_bias=None, pooling="cls+max",
                               project="Point-MAE (Pang et al., 2022), fine-tuned classification checkpoint"),
    "point-bert-pretrain": dict(root="transformer_q.", tok="encoder.", pos="pos_embed.", blocks="blocks.blocks.",
                                norm="norm.", reduce="reduce_dim.", cls=True, qkv_bias=None, pooling="cls+max",
                                project="Point-BERT (Yu et al., 2022), pretraining (MoCo) checkpoint, query branch"),
    "point-bert-finetune": dict(root="", tok="encoder.", pos="pos_embed.", blocks="blocks.blocks.", norm="norm.",
                                reduce="reduce_dim.", cls=True, qkv_bias=None, pooling="cls+max",
                                project="Point-BERT (Yu et al., 2022), fine-tuned classification checkpoint"),
    "point-jepa-pretrain": dict(root="", tok="tokenizer.embedding.encoder.", pos="positional_encoding.",
                                blocks="student.blocks.", norm="student.norm.", reduce=None, cls=False,
                                qkv_bias=None, pooling="mean+max",
                                project="Point-JEPA (Saito et al., 2024), pretraining checkpoint, student encoder"),
    "point-jepa-finetune": dict(root="", tok="tokenizer.embedding.encoder.", pos="positional_encoding.",
                                blocks="encoder.blocks.", norm="encoder.norm.", reduce=None, cls=None,
                                qkv_bias=None, pooling="mean+max",
                                project="Point-JEPA (Saito et al., 2024), fine-tuned classification checkpoint"),
}

KNOWN_LAYOUTS = tuple(_LAYOUTS) + ("pointgpt-pretrain", "pointgpt-finetune")

# Foundry tokenizer sub-module -> (official Sequential index, kind)
_TOKENIZER_MAP = (
    ("patch_embed.conv1a", "first_conv.0", "conv"),
    ("patch_embed.bn1", "first_conv.1", "bn"),
    ("patch_embed.conv1b", "first_conv.3", "conv"),
    ("patch_embed.conv2a", "second_conv.0", "conv"),
    ("patch_embed.bn2", "second_conv.1", "bn"),
    ("patch_embed.conv2b", "second_conv.3", "conv"),
)
_BLOCK_PARTS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
                "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")
_BN_PARTS = ("weight", "bias", "running_mean", "running_var")

_POINTGPT_LARGE_REFUSAL = (
    "is a PointGPT-B/L checkpoint (its tokenizer 'first_conv' has three convolutions, Encoder_large); "
    "Foundry loads PointGPT-S (the mini-PointNet 3-128-256 / 512-512-384 tokenizer) only"
)


# -- reading -----------------------------------------------------------------------------------
def read_official_state(path) -> tuple[dict, dict]:
    """The flat state dict of an official file (container unwrapped, `module.` dropped) and
    the container's other top-level entries that are plain values (epoch, ...)."""
    path = check_checkpoint_file(path, suffix=".pth")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # zip / pickle errors of every kind
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):  # the safe unpickler met objects or code
            raise FoundryInputError(
                f"{path} was refused: besides weights it carries Python objects or code that would run when it is "
                "loaded, and Foundry reads only plain tensors (it never turns weights_only off). If you trust its "
                "source, re-save just the weights there (torch.save(model.state_dict(), ...)) and load that file"
            ) from exc
        msg = _torch_load_reason(exc)
        raise FoundryInputError(
            f"could not read {path} as a PyTorch checkpoint ({msg}); the file may be truncated or corrupt "
            "(compare its size / checksum with the download), or not a checkpoint at all"
        ) from exc
    return unwrap_state(obj, source=str(path))


def _torch_load_reason(exc: Exception) -> str:
    """The informative line of a torch.load error (its weights_only preamble, which suggests turning
    the safety off, is left out)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    skip = ("weights only load failed", "weights_only", "please file an issue", "check the documentation")
    useful = [ln for ln in lines if not any(k in ln.lower() for k in skip)]
    return (useful or lines or [type(exc).__name__])[0][:200]


def unwrap_state(obj, *, source: str = "checkpoint") -> tuple[dict, dict]:
    if not isinstance(obj, dict):
        raise FoundryInputError(f"{source} holds a {type(obj).__name__}, not a dict of weights; "
                                "save model.state_dict(), not the module")
    extras = {}
    state = obj
    for key in ("base_model", "state_dict", "model", "model_state_dict", "module"):
        if key in obj and isinstance(obj[key], dict):
            state = obj[key]
            extras = {k: v for k, v in obj.items() if k != key and isinstance(v, (int, float, str))}
            break
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise FoundryInputError(f"{source} contains no tensors under 'base_model', 'state_dict' or 'model'; "
                                f"top-level keys: {sorted(map(str, obj))[:10]}")
    out = {}
    for k, v in tensors.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out, extras


def detect_layout(state: dict) -> str:
    """Which official layout a flat state dict follows; FoundryInputError if none."""
    keys = set(state)

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has("GPT_Transformer.blocks.layers."):
        return "pointgpt-pretrain"
    if "blocks.sos" in keys and has("blocks.layers."):
        return "pointgpt-finetune"
    if has("MAE_encoder.blocks.blocks."):
        return "point-mae-pretrain"
    if has("transformer_q.blocks.blocks."):
        return "point-bert-pretrain"
    if has("student.blocks.") and has("tokenizer.embedding."):
        return "point-jepa-pretrain"
    if has("encoder.blocks.") and has("tokenizer.embedding."):
        return "point-jepa-finetune"
    if has("blocks.blocks.") and has("encoder.first_conv."):
        return "point-bert-finetune" if "reduce_dim.weight" in keys else "point-mae-finetune"
    if any(k.startswith(("patch_embed.", "encoder.blocks.")) for k in keys) and has("patch_embed.conv1a"):
        raise FoundryInputError("these are Foundry weights, not an official checkpoint; load Foundry .safetensors "
                                "files with foundry.load")
    prefixes = sorted({k.split(".")[0] for k in keys})
    raise FoundryInputError(
        f"unknown checkpoint layout (top-level key prefixes: {prefixes[:12]}). Foundry reads the official "
        f"layouts {list(KNOWN_LAYOUTS)}: Point-MAE ('MAE_encoder.*' or 'encoder.first_conv.*' + 'blocks.blocks.*'), "
        "Point-BERT ('transformer_q.*' or 'reduce_dim.*'), Point-JEPA ('tokenizer.embedding.*' + 'student.*'/'encoder.*')"
    )


# -- mapping -----------------------------------------------------------------------------------
def _as_linear(w: torch.Tensor) -> torch.Tensor:
    return w[..., 0] if w.dim() == 3 and w.shape[-1] == 1 else w


def _depth(state: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state for m in [pat.match(k)] if m}
    if not idx:
        return 0
    if idx != set(range(max(idx) + 1)):
        missing = sorted(set(range(max(idx) + 1)) - idx)
        raise FoundryInputError(f"transformer blocks {missing} are missing under '{prefix}': the file is incomplete")
    return max(idx) + 1


def _floats(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).clone()


def _taker(state: dict, root: str, layout: str, source: str):
    """A `take(key)` that reads `root + key` (recording it as used) or names what is missing."""
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        full = root + key
        if full not in state:
            raise FoundryInputError(
                f"{source} looks like a {layout} checkpoint but lacks '{full}', which the encoder needs; "
                "the file is incomplete or from a different model variant"
            )
        used.add(full)
        return state[full]

    return take, used


def _map_tokenizer(state, root, tok, take, used, source) -> dict:
    """Official mini-PointNet (`first_conv`/`second_conv` Sequentials of Conv1d + BatchNorm1d)
    -> Foundry `patch_embed` (Linear + BatchNorm1d)."""
    out = {}
    for ours, theirs, kind in _TOKENIZER_MAP:
        if kind == "conv":
            w = _as_linear(take(f"{tok}{theirs}.weight"))
            out[f"{ours}.weight"] = _floats(w)
            bkey = root + f"{tok}{theirs}.bias"
            if bkey in state:
                used.add(bkey)
                out[f"{ours}.bias"] = _floats(state[bkey])
            else:  # Point-JEPA: the conv before each BatchNorm has no bias
                out[f"{ours}.bias"] = torch.zeros(w.shape[0])
        else:
            for part in _BN_PARTS:
                out[f"{ours}.{part}"] = _floats(take(f"{tok}{theirs}.{part}"))
            nkey = root + f"{tok}{theirs}.num_batches_tracked"
            out[f"{ours}.num_batches_tracked"] = (state[nkey].to(torch.int64).reshape(())
                                                  if nkey in state else torch.tensor(0, dtype=torch.int64))
            used.add(nkey)
    h2 = out["patch_embed.conv1b.weight"].shape[0]
    if out["patch_embed.conv1a.weight"].shape[1] != 3 or out["patch_embed.conv2a.weight"].shape[1] != 2 * h2:
        raise FoundryInputError(f"{source}: the tokenizer's shapes are not those of a mini-PointNet on xyz "
                                f"(first conv {tuple(out['patch_embed.conv1a.weight'].shape)})")
    return out


def _check_finite(out: dict, source: str) -> None:
    for k, v in list(out.items()):
        if v.is_floating_point() and not torch.isfinite(v).all():
            if ".bn" in k and k.endswith(("running_mean", "running_var")):
                # seen in some Point-JEPA files: reset the statistic rather than spread NaN
                out[k] = torch.zeros_like(v) if k.endswith("running_mean") else torch.ones_like(v)
            else:
                raise FoundryInputError(f"{source}: weight '{k}' contains NaN/Inf; the checkpoint is damaged")


def _info(state, used, layout, project, source, root) -> dict:
    """Provenance of a conversion: what was mapped and which (non-encoder) parts were ignored."""
    ignored = [k[len(root):] if k.startswith(root) else k for k in set(state) - used]
    return {
        "origin": "official checkpoint converted by foundry.models.official",
        "layout": layout,
        "project": project,
        "source_file": Path(source).name,
        "mapped_tensors": len(used & set(state)),
        "ignored_tensors": len(ignored),
        "ignored_prefixes": sorted({".".join(k.split(".")[:2 if k.startswith("blocks.") else 1]) for k in ignored}),
    }


def official_to_foundry(state: dict, layout: str | None = None, *, source: str = "checkpoint", **overrides):
    """Map an official flat state dict onto Foundry. Returns (BackboneConfig, foundry state dict,
    info dict). `overrides` are BackboneConfig fields (heads, num_groups, group_size, ...)."""
    layout = layout or detect_layout(state)
    if layout.startswith("pointgpt"):
        return _pointgpt_to_foundry(state, layout, source=source, **overrides)
    if layout not in _LAYOUTS:
        raise FoundryInputError(f"unknown layout {layout!r}; known: {list(KNOWN_LAYOUTS)}")
    spec = _LAYOUTS[layout]
    root = spec["root"]

    take, used = _taker(state, root, layout, source)
    out: dict[str, torch.Tensor] = _map_tokenizer(state, root, spec["tok"], take, used, source)
    h1, h2, h3 = (out[f"patch_embed.{n}.weight"].shape[0] for n in ("conv1a", "conv1b", "conv2a"))
    tok_width = out["patch_embed.conv2b.weight"].shape[0]
    # reduce (Point-BERT)
    if spec["reduce"]:
        out["reduce.weight"] = _floats(take(spec["reduce"] + "weight"))
        out["reduce.bias"] = _floats(take(spec["reduce"] + "bias"))
    # positions
    pos = spec["pos"]
    out["pos_embed.fc1.weight"] = _floats(take(pos + "0.weight"))
    out["pos_embed.fc1.bias"] = _floats(take(pos + "0.bias"))
    out["pos_embed.fc2.weight"] = _floats(take(pos + "2.weight"))
    out["pos_embed.fc2.bias"] = _floats(take(pos + "2.bias"))
    # transformer
    width = out["pos_embed.fc2.weight"].shape[0]
    depth = _depth(state, root + spec["blocks"])
    if depth == 0:
        raise FoundryInputError(f"{source}: no transformer blocks under '{root + spec['blocks']}'")
    qkv_bias = (root + spec["blocks"] + "0.attn.qkv.bias") in state
    for i in range(depth):
        b = f"{spec['blocks']}{i}."
        for part in _BLOCK_PARTS:
            out[f"encoder.blocks.{i}.{part}"] = _floats(take(b + part))
        if qkv_bias:
            out[f"encoder.blocks.{i}.attn.qkv.bias"] = _floats(take(b + "attn.qkv.bias"))
    out["norm.weight"] = _floats(take(spec["norm"] + "weight"))
    out["norm.bias"] = _floats(take(spec["norm"] + "bias"))
    # cls token
    cls = spec["cls"]
    if cls is None:  # Point-JEPA fine-tuning: only with cls pooling
        cls = (root + "cls_token") in state
    if cls:
        out["cls_token"] = _floats(take("cls_token")).reshape(1, 1, width)
        out["cls_pos"] = _floats(take("cls_pos")).reshape(1, 1, width)
    mlp_hidden = out["encoder.blocks.0.mlp.fc1.weight"].shape[0]

    _check_finite(out, source)

    cfg = dict(
        name=layout,
        num_points=1024, num_groups=64, group_size=32,
        width=width, depth=depth, heads=max(1, width // 64), mlp_ratio=mlp_hidden / width,
        qkv_bias=qkv_bias, drop_path=0.1, norm_eps=1e-5,
        tokenizer_hidden=(h1, h2, h3), tokenizer_width=tok_width if tok_width != width else None,
        pos_embed="mlp", pos_hidden=out["pos_embed.fc1.weight"].shape[0], pos_every_block=True,
        cls_token=bool(cls), pooling=spec["pooling"], causal=False, patch_order="fps", fps_start="first",
    )
    if layout == "point-jepa-finetune" and cls:
        cfg["pooling"] = "mean+max"  # the cls token is kept in the sequence; features pool the patches
    try:
        config = BackboneConfig(**{**cfg, **overrides})
    except (TypeError, ValueError) as exc:
        raise FoundryInputError(f"invalid override for {layout}: {exc}") from exc
    info = _info(state, used, layout, spec["project"], source, root)
    return config, out, info


def _pointgpt_to_foundry(state: dict, layout: str, *, source: str, **overrides):
    root = "GPT_Transformer." if layout == "pointgpt-pretrain" else ""
    if (root + "encoder.first_conv.4.weight") in state:
        raise FoundryInputError(f"{source} {_POINTGPT_LARGE_REFUSAL}")
    take, used = _taker(state, root, layout, source)
    out = _map_tokenizer(state, root, "encoder.", take, used, source)
    width = out["patch_embed.conv2b.weight"].shape[0]
    out["sos"] = _floats(take("blocks.sos")).reshape(width)
    out["sos_pos"] = _floats(take("sos_pos")).reshape(1, 1, width)
    depth = _depth(state, root + "blocks.layers.")
    if depth == 0:
        raise FoundryInputError(f"{source}: no transformer blocks under '{root}blocks.layers.'")
    for i in range(depth):
        b, o = f"blocks.layers.{i}.", f"encoder.blocks.{i}."
        for ln in ("ln_1", "ln_2"):
            out[o + ln + ".weight"] = _floats(take(b + ln + ".weight"))
            out[o + ln + ".bias"] = _floats(take(b + ln + ".bias"))
        out[o + "attn.qkv.weight"] = _floats(take(b + "attn.in_proj_weight"))  # rows: q, k, v
        out[o + "attn.qkv.bias"] = _floats(take(b + "attn.in_proj_bias"))
        out[o + "attn.proj.weight"] = _floats(take(b + "attn.out_proj.weight"))
        out[o + "attn.proj.bias"] = _floats(take(b + "attn.out_proj.bias"))
        out[o + "mlp.fc1.weight"] = _floats(take(b + "mlp.0.weight"))
        out[o + "mlp.fc1.bias"] = _floats(take(b + "mlp.0.bias"))
        out[o + "mlp.fc2.weight"] = _floats(take(b + "mlp.2.weight"))
        out[o + "mlp.fc2.bias"] = _floats(take(b + "mlp.2.bias"))
    out["norm.weight"] = _floats(take("blocks.ln_f.weight"))
    out["norm.bias"] = _floats(take("blocks.ln_f.bias"))
    cls = layout == "pointgpt-finetune" and (root + "cls_token") in state
    if cls:
        out["cls_token"] = _floats(take("cls_token")).reshape(1, 1, width)
        out["cls_pos"] = _floats(take("cls_pos")).reshape(1, 1, width)
        out["cls_norm.weight"] = _floats(take("blocks.cls_norm.weight"))
        out["cls_norm.bias"] = _floats(take("blocks.cls_norm.bias"))
    _check_finite(out, source)
    h1, h2, h3 = (out[f"patch_embed.{n}.weight"].shape[0] for n in ("conv1a", "conv1b", "conv2a"))
    cfg = dict(name=layout, width=width, depth=depth, heads=max(1, width // 64),
               mlp_ratio=out["encoder.blocks.0.mlp.fc1.weight"].shape[0] / width, tokenizer_hidden=(h1, h2, h3),
               cls_token=cls, pooling="cls+max" if cls else "mean+max")
    try:
        config = PointGPTConfig(**{**cfg, **overrides})
    except (TypeError, ValueError) as exc:
        raise FoundryInputError(f"invalid override for {layout}: {exc}") from exc
    project = "PointGPT-S (Chen et al., 2023), " + ("pretraining" if root else "fine-tuned") + " checkpoint"
    info = _info(state, used, layout, project, source, root)
    return config, out, info


def load_official(path, **overrides) -> nn.Module:
    """A `PointTransformer` (eval mode, CPU, fp32) holding the encoder of an official checkpoint.

    `overrides` set BackboneConfig fields the weights cannot tell (heads, num_groups, group_size,
    num_points, fps_start, ...). `model.checkpoint_info` records the layout and what was ignored.
    """
    state, extras = read_official_state(path)
    config, mapped, info = official_to_foundry(state, source=str(path), **overrides)
    model = PointGPTTransformer(config) if isinstance(config, PointGPTConfig) else PointTransformer(config)
    load_state_strict(model, mapped, source=str(path))
    if "epoch" in extras:
        info["source_epoch"] = extras["epoch"]
    model.checkpoint_info = info
    return model.eval()


def convert_official(path, out, *, dtype: torch.dtype | None = None, info: dict | None = None, **overrides) -> Path:
    """Convert an official checkpoint into a self-describing Foundry .safetensors file."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise FoundryInputError(f"the output of a conversion is a .safetensors file, got {out.name!r}")
    model = load_official(path, **overrides)
    meta = dict(model.checkpoint_info)
    meta.update(info or {})
    return save_checkpoint(model, out, info=meta, dtype=dtype)
