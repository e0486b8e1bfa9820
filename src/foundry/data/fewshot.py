"""N-way K-shot episodes that repeat exactly: drawn from a seed, saved to and loaded from JSON.

An episode (one "fold") picks `n_way` classes, `k_shot` support clouds and `n_query` query clouds
per class. Indices point into the split arrays they were drawn from (`load_arrays(...)["labels"]`):
by default support and query both come from `labels` (disjoint); with `query_labels` the queries
come from another split (e.g. support from train, queries from test, as in the Point-BERT
protocol). A checksum of the label arrays (and optionally of the whole data set) is stored, and
`verify` refuses to apply the splits to different data.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_write
from ..validation import FoundryInputError

FORMAT = "foundry-fewshot-splits"


def array_checksum(*arrays) -> str:
    """sha256 over the dtype, shape and bytes of the arrays (e.g. points and labels of a split)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _labels_1d(labels, name: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise FoundryInputError(f"{name} must be a 1-D integer array of class labels, got {lab.dtype} {lab.shape}")
    return lab.astype(np.int64)


@dataclass
class FewShotSplits:
    n_way: int
    k_shot: int
    n_query: int
    folds: int
    seed: int
    episodes: list = field(default_factory=list)  # [{"classes": [...], "support": [...], "query": [...]}]
    labels_checksum: str = ""
    query_labels_checksum: str | None = None  # set when queries come from another split
    dataset_checksum: str | None = None
    format: str = FORMAT

    def __len__(self) -> int:
        return len(self.episodes)

    def episode(self, fold: int, labels=None, query_labels=None):
        """(support_idx, support_y, query_idx, query_y) of one fold; y are episode-local labels
        0..n_way-1 in the order of the episode's classes. Labels given here are verified first."""
        if labels is not None:
            self.verify(labels, query_labels)
        ep = self.episodes[fold]
        k, q = self.k_shot, self.n_query
        sup_y = np.repeat(np.arange(self.n_way), k)
        qry_y = np.repeat(np.arange(self.n_way), q)
        return np.array(ep["support"], dtype=np.int64), sup_y, np.array(ep["query"], dtype=np.int64), qry_y

    def verify(self, labels, query_labels=None, dataset_checksum: str | None = None) -> None:
        """FoundryInputError unless these are the label arrays (and data set) the splits were drawn from."""
        if array_checksum(_labels_1d(labels, "labels")) != self.labels_checksum:
            raise FoundryInputError("these few-shot splits were drawn from different labels (checksum mismatch): "
                                    "use the same data set and split, or draw new splits with make_fewshot_splits")
        if self.query_labels_checksum is not None:
            if query_labels is None:
                raise FoundryInputError("these few-shot splits take queries from a second split; pass query_labels")
            if array_checksum(_labels_1d(query_labels, "query_labels")) != self.query_labels_checksum:
                raise FoundryInputError("query labels differ from the ones the splits were drawn from (checksum "
                                        "mismatch): use the same query split, or draw new splits")
        if dataset_checksum is not None and self.dataset_checksum is not None and dataset_checksum != self.dataset_checksum:
            raise FoundryInputError("these few-shot splits were drawn for a different data set (dataset checksum "
                                    "mismatch); draw new splits for this data")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> Path:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        return path

    to_json = save

    @classmethod
    def load(cls, path) -> "FewShotSplits":
        path = Path(path)
        if not path.is_file():
            raise FoundryInputError(f"few-shot split file {path} does not exist; create it with make_fewshot_splits(...)"
                                    ".save(path)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise FoundryInputError(f"{path} is not valid JSON ({exc}); delete it and draw the splits again") from exc
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise FoundryInputError(f"{path} is not a Foundry few-shot split file (format {FORMAT!r})")
        try:
            out = cls(**raw)
        except TypeError as exc:
            raise FoundryInputError(f"{path} has unexpected fields ({exc}); draw the splits again") from exc
        for i, ep in enumerate(out.episodes):
            if len(ep.get("classes", [])) != out.n_way or len(ep.get("support", [])) != out.n_way * out.k_shot \
                    or len(ep.get("query", [])) != out.n_way * out.n_query:
                raise FoundryInputError(f"{path}: episode {i} does not hold {out.n_way} classes x {out.k_shot} shots "
                                        f"+ {out.n_query} queries; the file was edited or truncated")
        return out

    from_json = load


def make_fewshot_splits(labels, n_way: int = 5, k_shot: int = 10, n_query: int = 20, folds: int = 10, seed: int = 0,
                        *, query_labels=None, dataset_checksum: str | None = None) -> FewShotSplits:
    """Draw `folds` seeded N-way K-shot episodes (see the module docstring)."""
    lab = _labels_1d(labels, "labels")
    qlab = None if query_labels is None else _labels_1d(query_labels, "query_labels")
    for name, v in (("n_way", n_way), ("k_shot", k_shot), ("n_query", n_query), ("folds", folds)):
        if int(v) <= 0:
            raise FoundryInputError(f"{name} must be a positive integer, got {v}")
    need = k_shot + (n_query if qlab is None else 0)
    classes, counts = np.unique(lab, return_counts=True)
    ok = set(classes[counts >= need].tolist())
    if qlab is not None:
        qc, qn = np.unique(qlab, return_counts=True)
        ok &= set(qc[qn >= n_query].tolist())
    eligible = np.array(sorted(ok), dtype=np.int64)
    if len(eligible) < n_way:
        raise FoundryInputError(f"only {len(eligible)} classes have enough examples for {k_shot} shots + {n_query} "
                                f"queries, but n_way={n_way}; lower n_way/k_shot/n_query")
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(int(folds)):
        chosen = rng.choice(eligible, n_way, replace=False)
        support, query = [], []
        for c in chosen:
            idx = rng.permutation(np.nonzero(lab == c)[0])
            support += idx[:k_shot].tolist()
            if qlab is None:
                query += idx[k_shot:k_shot + n_query].tolist()
        if qlab is not None:
            for c in chosen:
                query += rng.permutation(np.nonzero(qlab == c)[0])[:n_query].tolist()
        episodes.append({"classes": [int(c) for c in chosen], "support": support, "query": query})
    return FewShotSplits(int(n_way), int(k_shot), int(n_query), int(folds), int(seed), episodes,
                         labels_checksum=array_checksum(lab),
                         query_labels_checksum=None if qlab is None else array_checksum(qlab),
                         dataset_checksum=dataset_checksum)
