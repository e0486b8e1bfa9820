"""The mini-PointNet's eval path before 2026-12-07 (the published formula: the pooled feature concatenated
to every point, BatchNorm on running statistics), for the A/B scripts of this folder."""
import torch


def old(pe, n):
    x = torch.relu(pe._bn(pe.bn1, pe.conv1a(n)))
    x = pe.conv1b(x)
    pooled = x.amax(dim=2, keepdim=True)
    x = torch.cat([pooled.expand_as(x), x], dim=-1)
    x = torch.relu(pe._bn(pe.bn2, pe.conv2a(x)))
    return pe.conv2b(x).amax(dim=2)
