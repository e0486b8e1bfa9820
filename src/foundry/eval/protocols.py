"""The named evaluation protocols and their default / quick settings.

Each protocol module has `DEFAULTS` (full settings), `QUICK` (overrides for a CPU demo),
`METRICS` (what it reports, higher is better unless listed in LOWER_IS_BETTER) and
`run(ctx, settings, seed) -> {"metrics": {...}, "details": {...}, "data": {...}}`.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..validation import FoundryInputError
from . import fewshot, fidelity, finetune, partseg, probe, robustness, transfer
from .svm import linear_svm_eval


class _Svm:
    """Linear SVM on frozen global features (foundry.eval.svm): C picked once by 3-fold CV on the
    train split only, then one fit per seed, accuracy on test. Each seed sees every cloud in its
    own point order (FPS start, patches) and subsample (`seeded_points`, common.seeded_view), so
    the spread over seeds is the protocol's real one; per-cloud correctness is recorded for the
    paired intervals of `foundry compare`."""

    DEFAULTS = dict(data="modelnet10", train_split="trainval", test_split="test", num_points=1024,
                    train_per_class=None, test_per_class=None, cv=3, standardize=True, seeded_points=True)
    QUICK = dict(train_per_class=20, test_per_class=20)
    METRICS = ("accuracy",)

    @staticmethod
    def run(ctx, settings, seed):
        s = settings
        view = seed if s["seeded_points"] else None
        train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"], seed=view)
        test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"], seed=view)
        data = {"train": train.describe(), "test": test.describe()}
        xtr, xte = ctx.features(train), ctx.features(test)
        # C is chosen by a cross-validation with a fixed split seed, on the first seed's features,
        # once per model and data; every seed then fits with that C only
        key = ("svm-C", ctx.fingerprint, train.base_sha256 or train.checksum(), s["standardize"], s["cv"])
        chosen = ctx._memo.get(key)
        if chosen is None:
            res = linear_svm_eval(xtr, train.labels, xte, test.labels, seeds=(seed,), standardize=s["standardize"],
                                  cv=s["cv"])
            chosen = ctx._memo[key] = (res["C"], {str(k): v for k, v in res["cv_scores"].items()})
        else:
            res = linear_svm_eval(xtr, train.labels, xte, test.labels, seeds=(seed,), standardize=s["standardize"],
                                  c_grid=(chosen[0],), cv=s["cv"])
        details = {k: res[k] for k in ("cv", "cv_seed", "n_train", "n_test", "feature_dim")}
        details["C"], details["cv_scores"] = chosen
        details["correct"] = "".join("1" if c else "0" for c in res["correct"][0])  # per test cloud
        return {"metrics": {"accuracy": 100.0 * res["per_seed"][0]}, "details": details, "data": data}


PROTOCOLS = ("svm", "probe", "finetune", "fewshot", "partseg", "fidelity", "transfer", "robustness")
NAMES = PROTOCOLS
MODULES = {"probe": probe, "finetune": finetune, "fewshot": fewshot, "partseg": partseg, "fidelity": fidelity,
           "transfer": transfer, "robustness": robustness}
LOWER_IS_BETTER = {"smooth_l1"}


def get_protocol(name: str):
    if name == "svm":
        return _Svm
    if name in MODULES:
        return MODULES[name]
    raise FoundryInputError(f"unknown protocol {name!r}; choose from {', '.join(NAMES)}")


EVAL_SPLITS = ("test", "val")
# validation mode: what a protocol fits on and scores, in place of its test-mode splits
VAL_SPLIT_MAP = {"trainval": "train", "test": "val"}
# validation splits are small (ModelNet10 val: 11 clouds of its smallest class)
VAL_OVERRIDES = {"fewshot": {"n_query": 10}}


def protocol_settings(name: str, quick: bool = False, overrides: dict | None = None, split: str = "test") -> dict:
    """Full settings of a protocol: defaults, then the quick overrides, then (split="val") the
    validation splits in place of the test-mode ones, then the user's.

    split="test" fits on `trainval` (train + held-out val) and scores `test`: the report.
    split="val" fits on `train` and scores `val`: what every choice is made on."""
    if split not in EVAL_SPLITS:
        raise FoundryInputError(f"split must be one of {EVAL_SPLITS} (what the protocols score), got {split!r}")
    proto = get_protocol(name)
    settings = dict(proto.DEFAULTS)
    if quick:
        settings.update(proto.QUICK)
    if split == "val":
        settings.update({k: VAL_SPLIT_MAP.get(v, v) for k, v in settings.items() if k.endswith("split")})
        settings.update(VAL_OVERRIDES.get(name, {}))
    for k, v in (overrides or {}).items():
        if k not in settings:
            raise FoundryInputError(f"protocol {name!r} has no setting {k!r}; its settings: {sorted(settings)}")
        settings[k] = v
    return settings


def describe() -> SimpleNamespace:
    return SimpleNamespace(**{n: get_protocol(n) for n in NAMES})
