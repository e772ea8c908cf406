"""``swag``: Bayesian model average over SWAG-sampled feature extractors with a re-trained classifier.

A pool of ``pool_size`` extractors is sampled once from SWAG (extractor weights only; rank and scale from the
stage-1 moments; ``bn='recompute'`` re-estimates each sample's BN statistics on the training set). The classifier
is re-initialised and trained with class-balanced cross-entropy on stochastic representations (``classifier='sr'``:
each step draws ``samples_per_step`` pool members) or on the SWA features (``classifier='crt'``). Prediction is the
average of the softmax over the first ``eval_samples`` pool members (default: all). Needs ``--stage1 swa``.
The pool and its features are cached and shared with ``srepr``.
"""
import torch
import torch.nn.functional as F

from ltbench.heads import fresh_linear
from ltbench.method import Method, Stage2Context
from ltbench.registry import register_method
from ltbench.train.features import base_features, swag_pool_features
from ltbench.train.head import ce_on_features, train_head

POOL_DEFAULTS = {"pool_size": 8, "scale": 0.5, "diag_only": False, "bn": "recompute", "samples_per_step": 4,
                 "one_pass": False}  # one_pass: pool + base features in one data pass per split (see features.py)


def draw_members(pool_size: int, m: int, generator: torch.Generator, device) -> torch.Tensor:
    """``m`` distinct pool members for one step."""
    return torch.randperm(pool_size, generator=generator)[:m].to(device)


def bma_log_probs(head: torch.nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """log of the mean softmax over pool members; feats [S, N, D]."""
    with torch.no_grad():
        logp = F.log_softmax(head(feats), dim=-1)
        return torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(feats.shape[0])))


@register_method("swag")
class SWAG(Method):
    """SWAG: Bayesian model average over SWAG-sampled extractors with a re-trained classifier."""

    name = "swag"
    requires_swag = True
    defaults = {**POOL_DEFAULTS, "classifier": "sr", "eval_samples": None, "balanced": True}

    def fit(self, ctx: Stage2Context):
        o = self.options
        if o["classifier"] not in ("sr", "crt"):
            from ltbench.errors import LtbenchError
            raise LtbenchError(f"swag: classifier must be 'sr' or 'crt', got {o['classifier']!r}")
        pool = swag_pool_features(ctx, o["pool_size"], o["scale"], o["diag_only"], o["bn"], o["one_pass"])
        base = base_features(ctx)
        y = base["train_y"]
        head = fresh_linear(base["train"].shape[1], ctx.data.num_classes, ctx.generator).to(ctx.device)
        m = min(o["samples_per_step"], o["pool_size"])
        crt_loss = ce_on_features(head, base["train"], y)

        def loss(idx):
            if o["classifier"] == "crt":
                return crt_loss(idx)
            members = draw_members(o["pool_size"], m, ctx.generator, ctx.device)
            logits = head(pool["train"][members][:, idx])             # [M, B, C]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].repeat(m))
            return loss, (logits.mean(0).argmax(1) == y[idx]).sum(), len(idx)

        train_head(head, head.parameters(), y, loss, ctx, balanced=o["balanced"], tag="swag")
        s = o["eval_samples"] or o["pool_size"]
        ctx.info["bma_samples"] = int(s)
        return bma_log_probs(head, pool["test"][:s])
