"""Point operations in plain PyTorch: FPS, kNN, gather, Chamfer, and patch grouping."""
from .chamfer import chamfer_distance
from .fps import farthest_point_sample, fpsample_available
from .grouping import group_patches
from .knn import gather_points, knn

__all__ = ["chamfer_distance", "farthest_point_sample", "fpsample_available", "gather_points", "knn", "group_patches"]
