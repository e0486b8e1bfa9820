"""Evaluation under one protocol for every model (teacher, students, baselines).

    run_eval(model, protocols, seeds, out_dir, ...)      -> results dict   (`foundry eval`)
    run_compare(teacher, models, out_dir, ...)           -> comparison     (`foundry compare`)

Protocols (one module each): svm (linear SVM, `svm.py`), probe, finetune, fewshot, partseg,
fidelity, transfer (the teacher's heads scored on the model), robustness (clean-fitted heads on
corrupted clouds); `protocols.py` lists them with their default and quick settings. Shared rules: the
clouds are the same for all models and seeds; a seed varies each cloud's point order (FPS start)
and subsample, the same way for every model, and each protocol's own randomness; final-epoch numbers; nothing is chosen on a test split; mean +- std over seeds.
"""

from .compare import run_compare
from .protocols import PROTOCOLS
from .runner import run_eval

__all__ = ["run_eval", "run_compare", "PROTOCOLS"]
