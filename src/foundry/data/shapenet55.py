"""ShapeNet-55 in the Point-BERT `ShapeNet55-34` layout.

    <root>/shapenet_pc/<synset>-<model id>.npy   one (8192, 3) cloud per shape
    <root>/ShapeNet-55/train.txt, test.txt       one file name per line

`root` may also be the ShapeNet-55/ folder itself (its parent holds shapenet_pc/), or a folder with
train.txt/test.txt next to shapenet_pc/. The label of a shape is the index of its synset (the file
name prefix) among the sorted synsets of both split lists; class names are the ShapeNetCore
category names. Files are read on access, so the 52k shapes never sit in memory at once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..validation import FoundryInputError
from .base import ShapeFileSource, check_finite, normalize_unit_sphere, read_lines

# ShapeNetCore v2 synset -> category name (the 55 categories of ShapeNet-55).
SYNSET_NAMES = dict(pair.split(":") for pair in """
02691156:airplane 02747177:trash_bin 02773838:bag 02801938:basket 02808440:bathtub 02818832:bed 02828884:bench
02843684:birdhouse 02871439:bookshelf 02876657:bottle 02880940:bowl 02924116:bus 02933112:cabinet 02942699:camera
02946921:can 02954340:cap 02958343:car 02992529:cellphone 03001627:chair 03046257:clock 03085013:keyboard
03207941:dishwasher 03211117:display 03261776:earphone 03325088:faucet 03337140:file_cabinet 03467517:guitar
03513137:helmet 03593526:jar 03624134:knife 03636649:lamp 03642806:laptop 03691459:loudspeaker 03710193:mailbox
03759954:microphone 03761084:microwave 03790512:motorbike 03797390:mug 03928116:piano 03938244:pillow
03948459:pistol 03991062:flowerpot 04004475:printer 04074963:remote 04090263:rifle 04099429:rocket
04225987:skateboard 04256520:sofa 04330267:stove 04379243:table 04401088:telephone 04460130:tower 04468005:train
04530566:watercraft 04554684:washer""".split())


def _roots(folder: Path) -> tuple[Path, Path] | None:
    """(folder with train.txt/test.txt, shapenet_pc folder) or None."""
    for lists in (folder / "ShapeNet-55", folder):
        for pc in (folder / "shapenet_pc", folder.parent / "shapenet_pc"):
            if pc.is_dir() and any((lists / f"{s}.txt").is_file() for s in ("train", "test")):
                return lists, pc
    return None


def is_shapenet55(folder: Path) -> bool:
    return _roots(folder) is not None or (folder / "shapenet_pc").is_dir()


def _entries(lists: Path, split: str) -> list[str]:
    lst = lists / f"{split}.txt"
    if not lst.is_file():
        raise FoundryInputError(f"missing split list {lst}; ShapeNet-55 needs train.txt and test.txt "
                                "(one '<synset>-<id>.npy' per line)")
    names = read_lines(lst, f"{split} split list")
    if not names:
        raise FoundryInputError(f"{lst} is empty; list one '<synset>-<id>.npy' per line")
    return [n if n.endswith(".npy") else n + ".npy" for n in names]


def synset_of(name: str) -> str:
    return Path(name).name.split("-", 1)[0]


class ShapeNet55Source(ShapeFileSource):
    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        roots = _roots(folder)
        if roots is None:
            raise FoundryInputError(f"{folder} is not a ShapeNet-55 folder: expected shapenet_pc/ next to "
                                    "ShapeNet-55/train.txt and test.txt (Point-BERT's ShapeNet55-34 layout)")
        lists, self.pc = roots
        if split not in ("train", "test"):
            raise FoundryInputError(f"ShapeNet-55 has train and test splits only, not {split!r}")
        names = _entries(lists, split)
        synsets = {synset_of(n) for n in names}
        for other in ("train", "test"):
            if other != split and (lists / f"{other}.txt").is_file():
                synsets |= {synset_of(n) for n in _entries(lists, other)}
        self.synsets = sorted(synsets)
        index = {s: i for i, s in enumerate(self.synsets)}
        self.files = [self.pc / n for n in names]
        self.check_files(lists / f"{split}.txt")
        self.labels = np.array([index[synset_of(n)] for n in names], dtype=np.int64)
        self.class_names = [SYNSET_NAMES.get(s, s) for s in self.synsets]
        self.description = f"ShapeNet-55 {folder} [{split}]"

    def get(self, index: int):
        path = self.files[index]
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FoundryInputError(f"{path} is not a readable .npy array ({exc}); re-extract it") from exc
        if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0:
            raise FoundryInputError(f"{path}: expected an (N, 3) array of points, got shape {arr.shape}")
        pts = np.asarray(arr[:, :3], dtype=np.float32)
        check_finite(pts, str(path))
        return normalize_unit_sphere(pts), int(self.labels[index]), None
