"""Few-shot episodes: seeded, disjoint, JSON round trip, refused on other data."""
import numpy as np
import pytest

from foundry.data import FewShotSplits, array_checksum, make_fewshot_splits
from foundry.validation import FoundryInputError

LABELS = np.repeat(np.arange(8), 40)
QUERY = np.repeat(np.arange(8), 25)


def test_deterministic_and_well_formed():
    a = make_fewshot_splits(LABELS, 5, 10, 20, 10, 0)
    b = make_fewshot_splits(LABELS, 5, 10, 20, 10, 0)
    c = make_fewshot_splits(LABELS, 5, 10, 20, 10, 1)
    assert a == b and a != c and len(a) == 10
    for fold in range(10):
        sup, sy, qry, qy = a.episode(fold, LABELS)
        assert len(sup) == 50 and len(qry) == 100 and not set(sup) & set(qry)
        classes = a.episodes[fold]["classes"]
        assert len(set(classes)) == 5
        assert (LABELS[sup] == np.array(classes)[sy]).all() and (LABELS[qry] == np.array(classes)[qy]).all()


def test_json_round_trip_and_verification(tmp_path):
    s = make_fewshot_splits(LABELS, 5, 10, 20, 3, 7, query_labels=QUERY,
                            dataset_checksum=array_checksum(LABELS))
    path = s.save(tmp_path / "fs.json")
    t = FewShotSplits.load(path)
    assert t == s
    sup, _, qry, qy = t.episode(2, LABELS, QUERY)
    assert (QUERY[qry] == np.array(t.episodes[2]["classes"])[qy]).all()
    with pytest.raises(FoundryInputError, match="different labels"):
        t.verify(LABELS[::-1].copy(), QUERY)
    with pytest.raises(FoundryInputError, match="query_labels"):
        t.verify(LABELS)
    with pytest.raises(FoundryInputError, match="different data set"):
        t.verify(LABELS, QUERY, dataset_checksum="0" * 64)


def test_bad_requests_and_files(tmp_path):
    with pytest.raises(FoundryInputError, match="n_way"):
        make_fewshot_splits(LABELS, 9, 10, 20, 1, 0)
    with pytest.raises(FoundryInputError):
        make_fewshot_splits(LABELS.astype(float), 5, 10, 20, 1, 0)
    with pytest.raises(FoundryInputError, match="does not exist"):
        FewShotSplits.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FoundryInputError, match="not valid JSON"):
        FewShotSplits.load(tmp_path / "bad.json")
