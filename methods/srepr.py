"""``srepr``: SWA + SRepr (Nam, Jang & Lee, ICLR 2023): classifier re-training on stochastic representations from
SWAG, with self-distillation of the SWAG ensemble into the single SWA model. Inference is the SWA model alone.

The paper's Algorithm 1 could not be read; this follows ../shared/docs/paper-notes.md section 4.2 / 10 (every
unknown is an option; defaults are the notes' choices):

    L = (1 - alpha) * L_SR + alpha * T^2 * mean_x w(x) KL(p_T(.|x) || p_S(.|x)) + beta * CE(y, g(z_SWA))

* L_SR: cross-entropy of the shared classifier g on ``samples_per_step`` (M) stochastic representations
  z^(m) = f_{phi_m}(x), phi_m drawn from a pool of ``pool_size`` (P) SWAG samples (default P=8, M=4, ``scale``
  0.5, low-rank + diagonal; ``diag_only`` for SWAG-Diag; ``bn='recompute'`` per sample, or ``'swa'``).
* Teacher p_T = mean_m softmax(g(z^(m)) / T), with the gradient stopped; student p_S = softmax(g(z_SWA) / T).
* ``weighting`` w(x): ``none`` (S1, default), ``entropy`` (S2: 1 - H(p_T)/log K), ``mutual_info`` (S3: the BMA
  mutual information, normalised to mean 1 over the batch).
* ``alpha`` 0.5, ``temperature`` 1, ``beta`` 0; class-balanced sampling; the classifier is re-initialised
  (``init='reinit'``) or starts from the stage-1 head (``init='stage1'``). The extractor stays frozen.
Needs ``--stage1 swa``.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.evaluate import FeaturePredictor
from ltbench.heads import fresh_linear
from ltbench.method import Method, Stage2Context
from ltbench.options import Option
from ltbench.train.features import base_features
from ltbench.train.head import train_head
from methods.swag import POOL_LEGACY_OPTIONS, POOL_OPTIONS, draw_members, pool_features

WEIGHTINGS = ("none", "entropy", "mutual_info")


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def srepr_loss(head: nn.Module, z_swa: torch.Tensor, z_samples: torch.Tensor, y: torch.Tensor, alpha: float = 0.5,
               temperature: float = 1.0, weighting: str = "none", beta: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The SRepr loss on one batch. z_swa [B, D] (SWA features), z_samples [M, B, D] (stochastic features).

    Returns (loss, student logits). Gradients reach only ``head``: the teacher target is computed without grad.
    """
    m, b, _ = z_samples.shape
    logits_m = head(z_samples)                                     # [M, B, C]
    k = logits_m.shape[-1]
    l_sr = F.cross_entropy(logits_m.reshape(m * b, k), y.repeat(m))
    logits_s = head(z_swa)
    t = temperature
    with torch.no_grad():
        p_m = F.softmax(logits_m / t, dim=-1)
        p_t = p_m.mean(0)
        if weighting == "none":
            w = torch.ones(b, device=z_swa.device)
        elif weighting == "entropy":
            w = 1.0 - _entropy(p_t) / math.log(k)
        elif weighting == "mutual_info":
            mi = (_entropy(p_t) - _entropy(p_m).mean(0)).clamp_min(0)
            w = mi / mi.mean() if float(mi.mean()) > 0 else torch.ones_like(mi)
        else:
            raise LtbenchError(f"srepr: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    log_p_s = F.log_softmax(logits_s / t, dim=-1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_p_s)).sum(-1)
    loss = (1 - alpha) * l_sr + alpha * t * t * (w * kl).mean()
    if beta:
        loss = loss + beta * F.cross_entropy(logits_s, y)
    return loss, logits_s


class SRepr(Method):
    """SWA + SRepr: stochastic-representation re-training + SWAG-to-SWA self-distillation (Nam et al. 2023)."""

    name = "srepr"
    label = "SWA + SRepr"
    order = 50
    stage1_modes = ("swa",)
    legacy_options = POOL_LEGACY_OPTIONS
    option_specs = POOL_OPTIONS + (
        Option("alpha", "float", 0.5, "weight of the distillation term (1 - alpha: stochastic-representation CE)",
               low=0.0, high=1.0),
        Option("temperature", "float", 1.0, "distillation temperature T", low=0.0, low_open=True),
        Option("weighting", "str", "none", "per-example weight of the distillation term", choices=WEIGHTINGS),
        Option("beta", "float", 0.0, "weight of an extra CE on the SWA features", low=0.0),
        Option("init", "str", "reinit", "classifier start: re-initialised, or the stage-1 head",
               choices=("reinit", "stage1")),
        Option("balanced", "bool", True, "class-balanced sampling"),
    )

    def fit(self, ctx: Stage2Context):
        o = self.options
        pool = pool_features(ctx, o)
        base = base_features(ctx)
        z, y = base["train"], base["train_y"]
        head = fresh_linear(z.shape[1], ctx.data.num_classes, ctx.generator).to(ctx.device)
        if o["init"] == "stage1":
            head.load_state_dict(ctx.stage1.network.head.state_dict())
        m = min(o["samples_per_step"], o["pool_size"])

        def loss(idx):
            members = draw_members(o["pool_size"], m, ctx.generator, ctx.device)
            value, logits_s = srepr_loss(head, z[idx], pool["train"][members][:, idx], y[idx], o["alpha"],
                                         o["temperature"], o["weighting"], o["beta"])
            return value, (logits_s.argmax(1) == y[idx]).sum(), len(idx)

        train_head(head, head.parameters(), y, loss, ctx, balanced=o["balanced"], tag="srepr")
        return FeaturePredictor("base", lambda z: F.log_softmax(head(z), dim=1))
