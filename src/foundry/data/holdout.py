"""A validation split held out of a data set that ships without one (ModelNet10/40).

ModelNet has only train and test. Every choice this project makes (recipe, epochs,
hyper-parameters, which model ships) is made on a validation split, so `val` is carved out of
the official train split: a class-stratified `VAL_FRACTION` of each class (at least one cloud),
drawn with a fixed seed. Then

    train     = official train minus val   (what every training command sees)
    val       = the held-out clouds        (scored for every choice)
    trainval  = the official train split   (fitted on when test is scored)
    test      = the official test split    (only ever scored)

The indices of the bundled ModelNet10 split are saved in `assets/data/modelnet10/val_split.json`
with the checksum of the train labels they were drawn from; a folder whose train labels match
that checksum (e.g. the fp32 originals of the bundle) gets exactly those indices, any other
ModelNet folder gets the same rule applied to its own labels.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..validation import FoundryInputError

VAL_FRACTION = 0.1
VAL_SEED = 20261202
SAVED_SPLITS = (Path(__file__).resolve().parent.parent / "assets" / "data" / "modelnet10" / "val_split.json",)


def labels_checksum(labels) -> str:
    return hashlib.sha256(np.asarray(labels, dtype=np.int64).reshape(-1).tobytes()).hexdigest()


def stratified_holdout(labels, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> np.ndarray:
    """Sorted indices of a class-stratified held-out part: round(fraction * count) per class, >= 1."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(1, int(round(fraction * len(idx)))) if len(idx) > 1 else 0
        out.append(rng.choice(idx, take, replace=False))
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, np.int64)


def split_record(labels, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> dict:
    """What `val_split.json` holds: the rule, the indices and the checksums that pin them."""
    idx = stratified_holdout(labels, fraction, seed)
    return {"format": "foundry-holdout", "rule": "class-stratified, round(fraction * class count) per class, >= 1",
            "fraction": fraction, "seed": seed, "train_labels_sha256": labels_checksum(labels),
            "num_train_official": int(len(np.asarray(labels).reshape(-1))), "num_val": int(len(idx)),
            "indices_sha256": hashlib.sha256(idx.tobytes()).hexdigest(), "val_indices": idx.tolist()}


def holdout_indices(train_labels) -> tuple[np.ndarray, str]:
    """(val indices into the official train split, where they came from)."""
    checksum = labels_checksum(train_labels)
    for path in SAVED_SPLITS:
        if not path.is_file():
            continue
        rec = json.loads(path.read_text())
        if rec.get("train_labels_sha256") != checksum:
            continue
        idx = np.asarray(rec["val_indices"], dtype=np.int64)
        if hashlib.sha256(idx.tobytes()).hexdigest() != rec.get("indices_sha256"):
            raise FoundryInputError(f"{path} is corrupt: its val indices do not match their recorded checksum; "
                                    "reinstall foundry")
        return idx, f"saved split {path.name}"
    idx = stratified_holdout(train_labels)
    return idx, f"stratified {VAL_FRACTION:.0%} of train, seed {VAL_SEED}"


def split_official_train(labels, split: str) -> tuple[np.ndarray, str]:
    """(indices into the official train split, note) of `split`: "val" (held out) or "train" (the rest)."""
    val, origin = holdout_indices(labels)
    mask = np.zeros(len(labels), dtype=bool)
    mask[val] = True
    keep = np.flatnonzero(mask if split == "val" else ~mask)
    return keep, f"{split} = {'held-out' if split == 'val' else 'official train minus'} val ({origin})"
