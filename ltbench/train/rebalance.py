"""The classifier-balancing stage 2 shared by cRT and LWS: a classifier trained on a frozen extractor's features,
either from freshly augmented class-balanced images each step (the reference regime) or from cached features
(or, with ``backbone='finetune'``, a measurement aid, with the extractor trained too).

Options both methods declare (``REBALANCE_OPTIONS``):

* ``features='augmented'`` (default, as Kang et al.'s ``run_networks.py``): every step takes a class-balanced
  batch of training images, augments it (random crop + flip) and runs the frozen extractor on it.
  ``features='cached'``: un-augmented features extracted once in eval mode (one extractor pass; a deviation).
* ``extractor_bn='train'`` (default, the reference: its networks are all in ``train()`` mode in stage 2): the
  frozen extractor's BatchNorm uses batch statistics and its running statistics are re-estimated on the
  class-balanced batches; test features use the re-estimated statistics. ``'eval'`` keeps stage 1's statistics.
  Only used with ``features='augmented'``.

* ``backbone='frozen'`` (default, Kang et al.) or ``'finetune'``: the whole network re-trained with the classifier
  (cRT) or the scales (LWS) on the class-balanced augmented batches, in stage 1's precision. That is what
  BagofTricks-LT's stored cRT and LWS configs run (``BACKBONE.FREEZE`` left at its default ``False``); the option
  exists to measure that reading (docs/stage2-measurements.md), not as a method of its own.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch.nn as nn
import torch.nn.functional as F

from ..options import Option
from ..evaluate import FeaturePredictor
from .features import base_features
from ..errors import LtbenchError
from .head import ce_on_features, head_on_finetuned_extractor, head_on_frozen_extractor, train_head

REBALANCE_OPTIONS = (
    Option("balanced", "bool", True, "class-balanced sampling (false: instance-balanced)"),
    Option("features", "str", "augmented", "augmented: frozen extractor on augmented images each step "
           "(classifier-balancing); cached: un-augmented features extracted once", choices=("augmented", "cached")),
    Option("extractor_bn", "str", "train", "BN of the frozen extractor in stage 2 with features=augmented: "
           "train (batch statistics, running statistics re-estimated; the reference) or eval (stage-1 statistics)",
           choices=("train", "eval")),
    Option("backbone", "str", "frozen", "frozen: only the classifier (cRT) or its scales (LWS) train (Kang et al.; "
           "the reference); finetune: the whole network trains with them (BagofTricks-LT's stored configs; a "
           "deviation, ~stage-1 cost per epoch)", choices=("frozen", "finetune")),
)

def check_backbone_option(options: dict) -> None:
    """``backbone='finetune'`` needs images through the extractor with its BN in train mode; refuse the rest."""
    if options["backbone"] != "finetune":
        return
    clash = [f"{k}={options[k]}" for k, ok in (("features", "augmented"), ("extractor_bn", "train"))
             if options[k] != ok]
    if clash:
        raise LtbenchError("option backbone=finetune trains the extractor on augmented images with its BN in train "
                           f"mode; it cannot go with {' and '.join(clash)} (drop "
                           f"{'it' if len(clash) == 1 else 'them'} or use backbone=frozen)")


def fit_rebalanced(ctx, options: dict, make_head: Callable[[int], nn.Module],
                   trainable: Callable[[nn.Module], list], tag: str) -> tuple[nn.Module, FeaturePredictor]:
    """Train ``make_head(feature_dim)``'s ``trainable`` parameters; return (head, its predictor over the test
    features of the extractor it was trained on)."""
    ctx.info["stage2_features"] = options["features"]
    if options["features"] == "cached":
        f = base_features(ctx)
        head = make_head(f["train"].shape[1]).to(ctx.device)
        y = f["train_y"]
        train_head(head, trainable(head), y, ce_on_features(head, f["train"], y), ctx,
                   balanced=options["balanced"], tag=tag)
        return head, FeaturePredictor("base", lambda z: F.log_softmax(head(z), dim=1))
    ctx.info["stage2_extractor_bn"] = options["extractor_bn"]
    finetune = options["backbone"] == "finetune"
    extractor = copy.deepcopy(ctx.stage1.network.extractor)  # BN statistics may change; stage 1 stays as cached
    for p in extractor.parameters():
        p.requires_grad_(finetune)
    head = make_head(ctx.stage1.network.head.in_features).to(ctx.device)
    module = nn.ModuleDict({"head": head, "extractor": extractor})  # one checkpoint holds BN statistics too
    if finetune:
        loss = head_on_finetuned_extractor(head, extractor)
        params = trainable(head) + list(extractor.parameters())
        precision = ctx.cfg.stage1_precision(ctx.device)
        ctx.info["stage2_backbone"] = "finetune"
        ctx.info["stage2_precision"] = precision
    else:
        loss = head_on_frozen_extractor(head, extractor, options["extractor_bn"])
        params, precision = trainable(head), "fp32"
    train_head(module, params, ctx.data.train_labels, loss, ctx, balanced=options["balanced"], tag=tag,
               image_batches=True, precision=precision)
    extractor.eval()  # test features with the statistics stage 2 left (re-estimated with extractor_bn='train')
    return head, FeaturePredictor("extractor", lambda z: F.log_softmax(head(z), dim=1), extractor=extractor)
