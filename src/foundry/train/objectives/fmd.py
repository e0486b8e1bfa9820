"""Foundation Model Distillation's loss: the student's tokens against the frozen teacher's.

loss = SmoothL1(student tokens, teacher tokens of the target layer)
       [+ SmoothL1 on each extra teacher block the student reproduces]
       [+ feature_weight * SmoothL1(pool(student tokens), pool(teacher tokens))]
       [+ balance_weight * KL(SuperToken usage || uniform)]  [- gate_lambda * sum(gate keep probabilities)]

The pooled-feature term matches the global feature (the teacher's own pooling, e.g. mean+max) that
frozen-feature protocols (SVM, probes, few-shot) read: a max-pool is decided by a few extreme tokens,
which a token-wise loss averaged over 64 tokens weights lightly. The balance term (DSO only) keeps
the learned SuperTokens in use: without it the queries drift until a few of them take most tokens.
`layer_heads_only`: only the extra blocks' terms count (their output MLPs are all that trains).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...models.backbone import pool_tokens
from ...models.dso import usage_imbalance


def token_metrics(pred: torch.Tensor, target: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(SmoothL1 mean over all elements, mean per-token cosine similarity)."""
    loss = F.smooth_l1_loss(pred.float(), target.float(), beta=beta)
    cos = F.cosine_similarity(pred.detach().float(), target.float(), dim=-1).mean()
    return loss, cos


@dataclass
class FMDObjective:
    beta: float = 1.0
    feature_weight: float = 0.0
    balance_weight: float = 0.0
    gate_lambda: float = 1e-3
    pooling: str = "max"
    layer_heads_only: bool = False

    def describe(self, layer: int, extra_layers) -> str:
        return (f"FMD: SmoothL1(beta={self.beta}) on teacher layer {layer} tokens"
                + (f" + the same on teacher blocks {list(extra_layers)}" if extra_layers else "")
                + (" (only the extra layers' output MLPs trained)" if self.layer_heads_only else "")
                + (f" + {self.feature_weight} x SmoothL1 on pooled features" if self.feature_weight else "")
                + (f" + {self.balance_weight} x KL(SuperToken usage || uniform)" if self.balance_weight else ""))

    def __call__(self, out: dict, target: torch.Tensor, layer_targets: dict,
                 pooled_target: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """(total loss, metrics) from the student's `forward_supertokens` output and the teacher's tokens.
        pooled_target: the teacher's pooled feature when it is not the pooling of `target` (corrupted
        views: the clean cloud's)."""
        loss, cos = token_metrics(out["tokens"], target, self.beta)
        total = loss if not self.layer_heads_only else 0.0
        metrics = {"loss": float(loss.detach()), "cosine": float(cos)}
        for x, target_x in layer_targets.items():
            loss_x, _ = token_metrics(out["layer_tokens"][x], target_x, self.beta)
            total = total + loss_x
            metrics[f"loss_layer{x}"] = float(loss_x.detach())
        if self.feature_weight and not self.layer_heads_only:
            feat_loss = F.smooth_l1_loss(pool_tokens(out["tokens"].float(), self.pooling),
                                         pool_tokens(target.float(), self.pooling) if pooled_target is None
                                         else pooled_target.float(), beta=self.beta)
            total = total + self.feature_weight * feat_loss
            metrics["feature_loss"] = float(feat_loss.detach())
        if self.balance_weight and "usage" in out:
            total = total + self.balance_weight * usage_imbalance(out["usage"])
        if "gate_prob" in out and self.gate_lambda:
            total = total - self.gate_lambda * out["gate_prob"].float().sum(1).mean()
        if "usage" in out:
            metrics["supertokens_used"] = float((out["counts"].detach() > 0).float().sum(1).mean())
        if "merge" in out:
            metrics["merged_fraction"] = float(out["merge"].detach().mean())
        return total, metrics
