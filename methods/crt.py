"""``crt``: classifier re-training (Kang et al. 2020): a re-initialised linear classifier trained with class-balanced
sampling on the frozen extractor.

By default as classifier-balancing does it: freshly augmented class-balanced batches through the frozen backbone
every step, the backbone's BN in train mode (see ``ltbench/train/rebalance.py`` for the options, among them
``backbone=finetune``, BagofTricks-LT's stored cRT config, which also trains the backbone).
"""
from ltbench.heads import fresh_linear
from ltbench.method import Method, Stage2Context
from ltbench.train.rebalance import REBALANCE_OPTIONS, check_backbone_option, fit_rebalanced


class CRT(Method):
    """cRT: re-initialised linear classifier, class-balanced, frozen extractor (Kang et al. 2020)."""

    name = "crt"
    label = "cRT"
    order = 10
    option_specs = REBALANCE_OPTIONS
    # how runs recorded before each option behaved: the backbone frozen; before the augmented regime (be5958f),
    # cached un-augmented features
    legacy_options = {"backbone": "frozen", "features": "cached"}

    def validate(self) -> None:
        check_backbone_option(self.options)

    def fit(self, ctx: Stage2Context):
        make = lambda d: fresh_linear(d, ctx.data.num_classes, ctx.generator)  # noqa: E731
        _, predictor = fit_rebalanced(ctx, self.options, make, lambda h: list(h.parameters()), "crt")
        return predictor
