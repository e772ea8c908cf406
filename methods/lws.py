"""``lws``: learnable weight scaling (Kang et al. 2020): the stage-1 classifier stays frozen and one scale per class
is learned with class-balanced sampling on the frozen extractor (same regime options as ``crt``, among them
``backbone=finetune``, which also trains the extractor).
"""
from ltbench.heads import ScaledLinear
from ltbench.method import Method, Stage2Context
from ltbench.train.rebalance import REBALANCE_OPTIONS, check_backbone_option, fit_rebalanced


class LWS(Method):
    """LWS: learnable per-class scales on the frozen stage-1 classifier (Kang et al. 2020)."""

    name = "lws"
    label = "LWS"
    order = 20
    option_specs = REBALANCE_OPTIONS
    # how runs recorded before each option behaved: the backbone frozen; before the augmented regime (be5958f),
    # cached un-augmented features
    legacy_options = {"backbone": "frozen", "features": "cached"}

    def validate(self) -> None:
        check_backbone_option(self.options)

    def fit(self, ctx: Stage2Context):
        make = lambda d: ScaledLinear(ctx.stage1.network.head)  # noqa: E731
        head, predictor = fit_rebalanced(ctx, self.options, make, lambda h: [h.scales], "lws")
        ctx.info["lws_scales"] = [round(float(s), 6) for s in head.scales.detach().cpu()]
        return predictor
