"""``crt``: classifier re-training (Kang et al. 2020): a re-initialised linear classifier trained with class-balanced
sampling on the frozen extractor's features.

Options: ``balanced`` (default true: class-balanced sampling). Features are un-augmented and cached (Kang's code
augments in stage 2; with a frozen extractor this only changes the feature noise, and caching makes stage 2 one
extractor pass).
"""
import torch.nn.functional as F

from ltbench.heads import fresh_linear
from ltbench.method import Method, Stage2Context
from ltbench.registry import register_method
from ltbench.train.features import base_features
from ltbench.train.head import ce_on_features, train_head


@register_method("crt")
class CRT(Method):
    """cRT: re-initialised linear classifier, class-balanced, frozen extractor (Kang et al. 2020)."""

    name = "crt"
    defaults = {"balanced": True}

    def fit(self, ctx: Stage2Context):
        f = base_features(ctx)
        head = fresh_linear(f["train"].shape[1], ctx.data.num_classes, ctx.generator).to(ctx.device)
        y = f["train_y"]
        train_head(head, head.parameters(), y, ce_on_features(head, f["train"], y), ctx,
                   balanced=self.options["balanced"], tag="crt")
        return F.log_softmax(head(f["test"]).detach(), dim=1)
