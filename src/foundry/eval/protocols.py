"""The named evaluation protocols and their default / quick settings.

Each protocol module has `DEFAULTS` (full settings), `QUICK` (overrides for a CPU demo),
`METRICS` (what it reports, higher is better unless listed in LOWER_IS_BETTER) and
`run(ctx, settings, seed) -> {"metrics": {...}, "details": {...}, "data": {...}}`.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..validation import FoundryInputError


class _Svm:
    """Linear SVM on frozen global features (foundry.eval.svm): C picked by 3-fold CV on train
    only, one fit per seed, accuracy on test. With fixed features the spread over seeds is only
    the solver's; `reorder_points_per_seed=true` also re-draws each cloud's point order (and so
    the FPS patches) per seed, at the cost of one feature extraction per seed."""

    DEFAULTS = dict(data="modelnet10", train_split="train", test_split="test", num_points=1024,
                    train_per_class=None, test_per_class=None, cv=3, standardize=True, reorder_points_per_seed=False)
    QUICK = dict(train_per_class=20, test_per_class=20)
    METRICS = ("accuracy",)

    @staticmethod
    def run(ctx, settings, seed):
        from .common import reorder_points
        from .svm import linear_svm_eval

        s = settings
        train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"])
        test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"])
        data = {"train": train.describe(), "test": test.describe()}
        if s["reorder_points_per_seed"]:  # features change with the seed's point order (FPS start)
            train, test = reorder_points(train, seed), reorder_points(test, seed)
            data = {k: v | {"point_order_seed": seed} for k, v in data.items()}
        xtr, xte = ctx.features(train), ctx.features(test)
        # C is chosen by a cross-validation with a fixed split seed: the same for every seed, so it
        # is computed once per model and data, and each seed then fits with that C only
        key = ("svm-C", ctx.fingerprint, train.checksum(), test.checksum(), s["standardize"], s["cv"])
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
        return {"metrics": {"accuracy": 100.0 * res["per_seed"][0]}, "details": details, "data": data}


def _module(name):
    import importlib

    return importlib.import_module(f"foundry.eval.{name}")


from . import PROTOCOLS as NAMES  # noqa: E402
LOWER_IS_BETTER = {"smooth_l1"}


def get_protocol(name: str):
    if name == "svm":
        return _Svm
    if name in NAMES:
        return _module(name)
    raise FoundryInputError(f"unknown protocol {name!r}; choose from {', '.join(NAMES)}")


def protocol_settings(name: str, quick: bool = False, overrides: dict | None = None) -> dict:
    """Full settings of a protocol: defaults, then the quick overrides, then the user's."""
    proto = get_protocol(name)
    settings = dict(proto.DEFAULTS)
    if quick:
        settings.update(proto.QUICK)
    for k, v in (overrides or {}).items():
        if k not in settings:
            raise FoundryInputError(f"protocol {name!r} has no setting {k!r}; its settings: {sorted(settings)}")
        settings[k] = v
    return settings


def describe() -> SimpleNamespace:
    return SimpleNamespace(**{n: get_protocol(n) for n in NAMES})
