"""Evaluation under one protocol for every model (teacher, students, baselines).

    run_eval(model, protocols, seeds, out_dir, ...)      -> results dict   (`foundry eval`)
    run_compare(teacher, models, out_dir, ...)           -> comparison     (`foundry compare`)

Protocols (one module each): svm (linear SVM, `svm.py`), probe, finetune, fewshot, partseg,
fidelity, transfer (the teacher's heads scored on the model), robustness (clean-fitted heads on
corrupted clouds); `protocols.py` lists them with their default and quick settings. Shared rules: the
clouds are the same for all models and seeds; a seed varies each cloud's point order (FPS start)
and subsample, the same way for every model, and each protocol's own randomness; final-epoch numbers; nothing is chosen on a test split; mean +- std over seeds.
"""

__all__ = ["run_eval", "run_compare", "PROTOCOLS"]

PROTOCOLS = ("svm", "probe", "finetune", "fewshot", "partseg", "fidelity", "transfer", "robustness")


def __getattr__(name):  # lazy: importing foundry.eval stays cheap
    if name == "run_eval":
        from .runner import run_eval

        return run_eval
    if name == "run_compare":
        from .compare import run_compare

        return run_compare
    raise AttributeError(name)
