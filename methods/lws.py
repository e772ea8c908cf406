"""``lws``: learnable weight scaling (Kang et al. 2020): the stage-1 classifier stays frozen and one scale per class
is learned with class-balanced sampling on the frozen features.

Options: ``balanced`` (default true).
"""
import torch.nn.functional as F

from ltbench.heads import ScaledLinear
from ltbench.method import Method, Stage2Context
from ltbench.registry import register_method
from ltbench.train.features import base_features
from ltbench.train.head import ce_on_features, train_head


@register_method("lws")
class LWS(Method):
    """LWS: learnable per-class scales on the frozen stage-1 classifier (Kang et al. 2020)."""

    name = "lws"
    defaults = {"balanced": True}

    def fit(self, ctx: Stage2Context):
        f = base_features(ctx)
        head = ScaledLinear(ctx.stage1.network.head).to(ctx.device)
        y = f["train_y"]
        train_head(head, [head.scales], y, ce_on_features(head, f["train"], y), ctx,
                   balanced=self.options["balanced"], tag="lws")
        ctx.info["lws_scales"] = [round(float(s), 6) for s in head.scales.detach().cpu()]
        return F.log_softmax(head(f["test"]).detach(), dim=1)
