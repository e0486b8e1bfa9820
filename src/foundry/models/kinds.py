"""The one table of model kinds: the name a checkpoint stores -> the model class and its config.

A family is added here (and nowhere else): `load_checkpoint` builds every kind through
`build_model`, and `save_checkpoint` stores `model.kind`.
"""
from __future__ import annotations

from .backbone import PointTransformer
from .baselines import ToMeConfig, ToMeTeacher
from .base import FoundryModel
from .config import BackboneConfig
from .pointgpt import PointGPTConfig, PointGPTTransformer
from .student import FoundryStudent
from .student_config import StudentConfig

KINDS: dict[str, tuple[type[FoundryModel], type]] = {
    "backbone": (PointTransformer, BackboneConfig),
    "pointgpt": (PointGPTTransformer, PointGPTConfig),
    "student": (FoundryStudent, StudentConfig),
    "tome-teacher": (ToMeTeacher, ToMeConfig),
}


def build_model(kind: str, config: dict) -> FoundryModel:
    """An untrained model of `kind` from its config dict (KeyError for an unknown kind)."""
    model_cls, config_cls = KINDS[kind]
    return model_cls(config_cls.from_dict(config))
