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

from ltbench.errors import LtbenchError
from ltbench.evaluate import FeaturePredictor
from ltbench.heads import fresh_linear
from ltbench.method import Method, Stage2Context
from ltbench.options import Option
from ltbench.train.features import base_features, swag_pool_features
from ltbench.train.head import ce_on_features, train_head

POOL_OPTIONS = (
    Option("pool_size", "int", 8, "SWAG samples in the pool (P)", low=1),
    Option("scale", "float", 0.5, "SWAG sampling scale (covariance multiplier)", low=0.0),
    Option("diag_only", "bool", False, "SWAG-Diag: no low-rank term"),
    Option("lowrank_norm", "str", "max_rank", "low-rank term divided by sqrt(K-1), K the maximum rank "
           "(max_rank: reference swa_gaussian) or the columns kept (kept)", choices=("max_rank", "kept")),
    Option("bn", "str", "recompute", "BN statistics of each sample: recompute on the training set, or reuse "
           "the SWA ones", choices=("recompute", "swa")),
    Option("samples_per_step", "int", 4, "pool members drawn per step (M)", low=1),
    Option("one_pass", "bool", False, "pool + base features in one data pass per split (see features.py)"),
)


POOL_KEYS = ("pool_size", "scale", "diag_only", "bn", "one_pass", "lowrank_norm")


def pool_features(ctx, o: dict) -> dict:
    """The cached SWAG pool's training features for the pool options in ``o``."""
    return swag_pool_features(ctx, **{k: o[k] for k in POOL_KEYS})


def draw_members(pool_size: int, m: int, generator: torch.Generator, device) -> torch.Tensor:
    """``m`` distinct pool members for one step."""
    return torch.randperm(pool_size, generator=generator)[:m].to(device)


def bma_log_probs(head: torch.nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """log of the mean softmax over pool members; feats [S, N, D]."""
    with torch.no_grad():
        logp = F.log_softmax(head(feats), dim=-1)
        return torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(feats.shape[0])))


# runs recorded before the reference normalisation (be5958f) divided the low-rank term by sqrt(K-1) with K the
# snapshots kept: lowrank_norm=kept
POOL_LEGACY_OPTIONS = {"lowrank_norm": "kept"}


class SWAG(Method):
    """SWAG: Bayesian model average over SWAG-sampled extractors with a re-trained classifier."""

    name = "swag"
    label = "SWAG"
    order = 40
    stage1_modes = ("swa",)
    legacy_options = POOL_LEGACY_OPTIONS
    option_specs = POOL_OPTIONS + (
        Option("classifier", "str", "sr", "train the classifier on stochastic representations (sr) or on the "
               "SWA features (crt)", choices=("sr", "crt")),
        Option("eval_samples", "int", None, "pool members averaged at test time (default: all)", low=1,
               nullable=True),
        Option("balanced", "bool", True, "class-balanced sampling"),
    )

    def validate(self) -> None:
        o = self.options
        if o["eval_samples"] is not None and o["eval_samples"] > o["pool_size"]:
            raise LtbenchError(f"method 'swag': option eval_samples={o['eval_samples']} exceeds pool_size="
                               f"{o['pool_size']}")

    def fit(self, ctx: Stage2Context):
        o = self.options
        pool = pool_features(ctx, o)
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
        return FeaturePredictor("pool", lambda zp: bma_log_probs(head, zp[:s]), pool={k: o[k] for k in POOL_KEYS})
