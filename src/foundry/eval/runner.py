"""`foundry eval`: run named protocols on one model, seed by seed, resumably.

Layout of an output folder:
    results.json          config, seeds, per-seed values, mean +- std, data checksums, versions,
                          git commit, device, wall time (rewritten after every finished seed)
    results.md            the same as a Markdown table
    runs/<protocol>/seed_<s>.json   one file per finished (protocol, seed), written atomically;
                          a rerun skips those whose configuration hash matches
    splits/               few-shot splits (JSON);  heads/  trained part-segmentation heads
    cache/                frozen global features (.npy), keyed by model and data checksums
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..api import is_preset, resolve_model
from ..hub import resolve
from ..io import atomic_write, config_dict, machine_info, model_fingerprint, write_json
from ..locks import file_lock
from ..validation import FoundryInputError, parse_key_values
from .common import (FeatureCache, Split, extract_tokens, git_commit, load_split, mean_std, no_parts_error,
                     package_versions, seeded_view)
from .protocols import LOWER_IS_BETTER, get_protocol, protocol_settings

RESULT_VERSION = 1


def load_model(spec, seed: int = 0):
    """(model, name): a shipped name / checkpoint / official file via foundry.load, or a preset
    name (an untrained model built with a fixed seed), or an nn.Module as is."""
    if isinstance(spec, torch.nn.Module):
        return spec.eval(), getattr(spec, "eval_name", type(spec).__name__)
    spec = str(spec)
    untrained = resolve(spec) is None and not Path(spec).exists() and is_preset(spec)
    model = resolve_model(spec, seed=seed)
    if untrained:
        return model, f"{spec} (random init, seed {seed})"
    return model, Path(spec).stem if Path(spec).exists() else spec


class EvalContext:
    """What a protocol sees: the model (and reference), cached splits, features and tokens."""

    def __init__(self, model, name, *, reference=None, reference_name=None, device="cpu", batch_size=32,
                 out_dir=None, log=print, progress=False, cache_dir=None):
        self.model = model.to(device).eval()
        self.name = name
        self.fingerprint = model_fingerprint(model)
        self.reference = reference.to(device).eval() if reference is not None else None
        self.reference_name = reference_name
        self.reference_fingerprint = model_fingerprint(reference) if reference is not None else None
        self.device = device
        self.reference_device = device
        self.batch_size = batch_size
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if cache_dir is None and self.out_dir is not None:
            cache_dir = self.out_dir / "cache"
        self.cache = FeatureCache(cache_dir)
        self.log = log
        self.progress = progress
        self._memo: dict = {}

    def memo(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    _shared_tokens: dict = {}  # (fingerprint, data checksum, layers) -> (tokens, centres), for every run in
    MAX_SHARED_TOKENS = 8      # this process: `foundry compare` runs the teacher over each view once

    def tokens(self, split: Split, layers, which: str = "model"):
        """Frozen tokens (fp16) and centres of `split` from the model or the reference, blocks `layers`
        concatenated (None: the final tokens)."""
        model, fp = (self.model, self.fingerprint) if which == "model" else (self.reference, self.reference_fingerprint)
        key = (fp, split.checksum(), str(layers))
        shared = EvalContext._shared_tokens
        if key not in shared:
            while len(shared) >= self.MAX_SHARED_TOKENS:
                shared.pop(next(iter(shared)))
            shared[key] = extract_tokens(model, split.points, layers, self.batch_size, self.device, torch.float16)
        return shared[key]

    def split(self, spec, split, num_points=None, max_per_class=None, need_parts=False, seed=None) -> Split:
        """One split; with `seed`, as that evaluation seed sees it (`seeded_view`: point order and,
        where the clouds hold more points than `num_points`, the subsample), the same for every model."""
        if seed is None:
            key = ("split", spec, split, num_points, max_per_class)
            data = self.memo(key, lambda: load_split(spec, split, num_points, max_per_class, need_parts))
        else:
            def load_all_points():
                try:
                    return load_split(spec, split, None, max_per_class, need_parts)
                except FoundryInputError:  # clouds of different sizes: a fixed subsample, then the seeded order
                    return load_split(spec, split, num_points, max_per_class, need_parts)

            base = self.memo(("split", spec, split, "all points", max_per_class), load_all_points)
            data = self.memo(("view", spec, split, num_points, max_per_class, seed),
                             lambda: seeded_view(base, seed, num_points))
        if need_parts and data.parts is None:
            raise no_parts_error(spec, split)
        return data

    def features(self, split: Split, which: str = "model"):
        model, fp = (self.model, self.fingerprint) if which == "model" else (self.reference, self.reference_fingerprint)
        if model is None:
            raise FoundryInputError("this protocol needs a reference model (--reference)")
        return self.cache.features(model, split, fp, batch_size=self.batch_size, device=self.device,
                                   progress=self.progress)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def parse_overrides(items) -> dict:
    """["svm.train_per_class=50", "fewshot.settings=[[5,10]]"] -> {"svm": {...}, "fewshot": {...}}."""
    out: dict = {}
    for key, value in parse_key_values(items, key_form="PROTOCOL.KEY").items():
        if "." not in key:
            raise FoundryInputError(f"--set expects PROTOCOL.KEY=VALUE (e.g. probe.epochs=20), got {key!r}")
        proto, name = key.split(".", 1)
        out.setdefault(proto, {})[name] = value
    return out


def run_eval(model, protocols, seeds=(0, 1, 2), out_dir=None, *, quick=False, overrides=None, reference=None,
             device="cpu", batch_size=32, overwrite=False, log=print, name=None, progress=False,
             split: str = "test", cache_dir=None) -> dict:
    """Run `protocols` x `seeds` on `model` (a name, path or module) and write `out_dir`.

    overrides: {protocol: {setting: value}}; reference: a model (name, path or module) that
    fidelity compares with and few-shot pairs with. split: "test" (fit on train + val, score test:
    the report) or "val" (fit on train, score the validation split: for every choice). Returns the results dict (also written to
    out_dir/results.json and results.md). cache_dir: where frozen features are kept on disk (default
    out_dir/cache; `foundry compare` shares one between its models, so a later run reuses the teacher's).
    """
    t_start = time.time()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise FoundryInputError("give at least one seed (3 or more for a mean +- std)")
    protocols = list(dict.fromkeys(protocols))
    if not protocols:
        raise FoundryInputError("give at least one --protocol")
    overrides = overrides or {}
    for p in overrides:
        get_protocol(p)
    all_settings = {p: protocol_settings(p, quick, overrides.get(p), split) for p in protocols}
    mdl, mname = load_model(model)
    ref, rname = (None, None)
    if reference is not None:
        ref, rname = load_model(reference)
    ctx = EvalContext(mdl, name or mname, reference=ref, reference_name=rname, device=device,
                      batch_size=batch_size, out_dir=out_dir, log=log, progress=progress, cache_dir=cache_dir)
    out = Path(out_dir) if out_dir is not None else None
    results = {
        "format": "foundry-eval", "version": RESULT_VERSION,
        "model": {"name": ctx.name, "spec": str(model) if not isinstance(model, torch.nn.Module) else ctx.name,
                  "kind": mdl.kind, "fingerprint": ctx.fingerprint,
                  "config": _config(mdl), "info": getattr(mdl, "checkpoint_info", {}),
                  "parameters": int(sum(p.numel() for p in mdl.parameters()))},
        "reference": None if ref is None else {"name": rname, "fingerprint": ctx.reference_fingerprint,
                                                "kind": ref.kind},
        "seeds": seeds, "quick": bool(quick), "split": split, "device": machine_info(device), "versions": package_versions(),
        "git": git_commit(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocols": {},
    }
    before = _read_results(out) if out is not None else {}  # what an earlier run wrote (its seeds can be restored)
    if out is not None:
        _check_same_model(out, before, ctx.fingerprint, ctx.name, overwrite)
    if overwrite:
        before = {}
    for proto_name in protocols:
        proto = get_protocol(proto_name)
        settings = all_settings[proto_name]
        uses_ref = proto_name in ("fidelity", "fewshot", "transfer") and ref is not None
        config = {"protocol": proto_name, "settings": settings, "model_fingerprint": ctx.fingerprint,
                  "reference_fingerprint": ctx.reference_fingerprint if uses_ref else None,
                  "result_version": RESULT_VERSION}
        chash = _hash(config)
        entry = {"settings": settings, "config_hash": chash, "per_seed": {}, "details": {}, "data": {},
                 "wall_time_s": {}, "resumed": []}
        results["protocols"][proto_name] = entry
        for seed in seeds:
            path = out / "runs" / proto_name / f"seed_{seed}.json" if out is not None else None
            rec = _load_done(path, chash, overwrite)
            if rec is None:
                rec = _from_results(before, proto_name, chash, seed, config)
                if rec is not None and path is not None:
                    write_json(path, rec)  # the per-seed record again, as a run would have written it
            if rec is not None:
                entry["resumed"].append(seed)
                log(f"[{proto_name} seed {seed}] done before, skipped ({path}"
                    + (", restored from results.json)" if rec.get("restored_from") else ")"))
            else:
                log(f"[{proto_name} seed {seed}] running on {ctx.name} ...")
                t0 = time.time()
                res = proto.run(ctx, settings, seed)
                rec = {"config": config, "config_hash": chash, "seed": seed, **res,
                       "wall_time_s": time.time() - t0,
                       "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                if path is not None:
                    write_json(path, rec)
                log(f"[{proto_name} seed {seed}] " + ", ".join(f"{k}={v:.4g}" for k, v in res["metrics"].items())
                    + f" ({rec['wall_time_s']:.1f} s)")
            entry["per_seed"][str(seed)] = rec["metrics"]
            entry["details"][str(seed)] = rec.get("details", {})
            entry["data"][str(seed)] = rec.get("data", {})
            entry["wall_time_s"][str(seed)] = rec.get("wall_time_s")
            _summarise(entry, proto)
            if out is not None:
                results["wall_time_s"] = time.time() - t_start
                _write_results(out, results, protocols)
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["wall_time_s"] = time.time() - t_start
    if out is not None:
        _write_results(out, results, protocols, markdown=True)
    return results


def _from_results(before: dict, proto_name: str, chash: str, seed: int, config: dict) -> dict | None:
    """One seed's finished record from a results.json alone (a published folder keeps results.json
    but not always its runs/): the same configuration hash, so the same protocol, settings and models."""
    entry = (before.get("protocols") or {}).get(proto_name) or {}
    key = str(seed)
    if entry.get("config_hash") != chash or key not in (entry.get("per_seed") or {}):
        return None
    return {"config": config, "config_hash": chash, "seed": seed, "metrics": entry["per_seed"][key],
            "details": (entry.get("details") or {}).get(key, {}), "data": (entry.get("data") or {}).get(key, {}),
            "wall_time_s": (entry.get("wall_time_s") or {}).get(key), "finished": before.get("finished"),
            "restored_from": "results.json"}


def _read_results(out: Path) -> dict:
    try:
        before = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):  # JSON or UTF-8 errors
        return {}
    return before if isinstance(before, dict) else {}


def _check_same_model(out: Path, before: dict, fingerprint: str, name: str, overwrite: bool) -> None:
    """Refuse an --out folder whose results.json (`before`, as read) belongs to another model (unless overwrite)."""
    theirs = (before.get("model") or {}).get("fingerprint")
    if theirs and theirs != fingerprint and not overwrite:
        raise FoundryInputError(
            f"{out} holds the results of another model ({(before.get('model') or {}).get('name')!r}, fingerprint "
            f"{str(theirs)[:12]}), not of {name!r}; use another --out folder, or --overwrite to replace them")


def _write_results(out: Path, results: dict, protocols: list, markdown: bool = False) -> None:
    """Write results.json (and results.md), merged with what other runs of the same model wrote
    into this folder meanwhile: protocols this run does not run are taken from the file as it is
    now, under a lock, so concurrent `foundry eval` runs into one --out all keep their results."""

    with file_lock(out / ".results.lock"):
        before = _read_results(out)
        if (before.get("model") or {}).get("fingerprint") == results["model"]["fingerprint"]:
            for p, e in (before.get("protocols") or {}).items():
                if p not in protocols:
                    results["protocols"][p] = e
        write_json(out / "results.json", results)
        if markdown:
            text = markdown_table(results)
            atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))


def _config(model) -> dict:
    return config_dict(model) if hasattr(model, "config") else {}


def _load_done(path, chash, overwrite):
    if path is None or not path.exists() or overwrite:
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):  # JSON or UTF-8 errors
        return None  # unreadable (should not happen: files are written atomically): redo it
    if rec.get("config_hash") != chash:
        old = rec.get("config", {})
        raise FoundryInputError(
            f"{path} holds a result of another configuration (model {str(old.get('model_fingerprint'))[:12]}, "
            f"settings {old.get('settings')}); use another --out folder, or --overwrite to replace it")
    return rec


def _summarise(entry: dict, proto) -> None:
    names = []
    for m in entry["per_seed"].values():
        names += [k for k in m if k not in names]
    entry["summary"] = {k: mean_std([m[k] for m in entry["per_seed"].values() if m.get(k) is not None])
                        for k in names}
    checks = {json.dumps({k: v.get("base_sha256", v.get("sha256")) for k, v in d.items()}, sort_keys=True)
              for d in entry["data"].values()}
    entry["data_consistent_across_seeds"] = len(checks) <= 1
    entry["data_checksums"] = {k: v.get("sha256") for k, v in next(iter(entry["data"].values()), {}).items()}
    if hasattr(proto, "summarize"):
        per_seed = {s: {"metrics": entry["per_seed"][s], "details": entry["details"][s]} for s in entry["per_seed"]}
        entry["pooled"] = proto.summarize(per_seed)


def fmt(stat: dict, metric: str = "") -> str:
    if stat is None or stat.get("n", 0) == 0 or not np.isfinite(stat["mean"]):
        return "-"
    digits = 4 if metric in ("smooth_l1", "cosine", "cka_tokens", "cka_features") else 2
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(results: dict) -> str:
    m = results["model"]
    lines = [f"# foundry eval: {m['name']}", "",
             f"kind {m['kind']}, {m['parameters']:,} parameters, fingerprint {m['fingerprint'][:12]}; "
             f"seeds {results['seeds']}{' (quick settings)' if results.get('quick') else ''}; "
             f"device {results['device']['device']}; wall time {results.get('wall_time_s', 0):.1f} s", "",
             "| protocol | metric | mean ± std (over seeds) | seeds | data |", "|---|---|---|---|---|"]
    for name, e in results["protocols"].items():
        data = ", ".join(f"{v.get('spec')}:{v.get('split')} ({v.get('clouds')})"
                         for v in next(iter(e["data"].values()), {}).values())
        for metric, stat in e.get("summary", {}).items():
            arrow = " (lower is better)" if metric in LOWER_IS_BETTER else ""
            lines.append(f"| {name} | {metric}{arrow} | {fmt(stat, metric)} | {stat['n']} | {data} |")
        for metric, pooled in (e.get("pooled") or {}).items():
            lines.append(f"| {name} | {metric}, all folds pooled | {fmt(pooled['all_folds'])} | "
                         f"{pooled['all_folds']['n']} folds | {data} |")
            if "paired_difference_all_folds" in pooled:
                lines.append(f"| {name} | {metric} minus reference, per fold | "
                             f"{fmt(pooled['paired_difference_all_folds'])} | "
                             f"{pooled['paired_difference_all_folds']['n']} folds | {data} |")
    lines += ["", "## Settings", ""]
    for name, e in results["protocols"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in e["settings"].items()))
    lines += ["", "Accuracies and mIoU in percent; std is the sample standard deviation (ddof=1). "
              "Settings of each protocol are in results.json; "
              "final-epoch numbers, nothing chosen on a test split, voting off unless named in the metric."]
    return "\n".join(lines) + "\n"
