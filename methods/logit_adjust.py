"""``logit_adjust``: post-hoc logit adjustment (Menon et al., ICLR 2021, "Long-tail learning via logit
adjustment", eq. 8): predict argmax_y f_y(x) - tau * log pi_y, with pi the training class prior.

No training: the stage-1 network's logits are shifted by ``tau`` times the log of the empirical training-class
frequencies (tau = 1, the default, is the Bayes-optimal shift for the balanced error under the paper's model).
Runs on either extractor.
"""
import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import Method, Stage2Context
from ltbench.options import Option


def log_prior(class_counts) -> torch.Tensor:
    """log pi_y from training counts; a class without training images has no defined prior."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if bool((counts <= 0).any()):
        empty = torch.nonzero(counts <= 0).flatten().tolist()
        raise LtbenchError(f"logit_adjust: classes {empty[:5]} have no training images, so log prior is undefined")
    return torch.log(counts / counts.sum()).float()


def adjusted_log_probs(logits: torch.Tensor, prior_log: torch.Tensor, tau: float) -> torch.Tensor:
    """log softmax(logits - tau * log pi)."""
    return F.log_softmax(logits.float() - tau * prior_log.to(logits.device), dim=1)


class LogitAdjust(Method):
    """Post-hoc logit adjustment: logits - tau * log prior (Menon et al. 2021)."""

    name = "logit_adjust"
    label = "Logit adj. (post-hoc)"
    order = 35
    option_specs = (Option("tau", "float", 1.0, "scale of the log-prior shift", low=0.0),)

    def fit(self, ctx: Stage2Context):
        net = ctx.stage1.network.eval()
        prior = log_prior(ctx.data.class_counts())
        tau = self.options["tau"]

        def predict(x: torch.Tensor) -> torch.Tensor:
            return adjusted_log_probs(net(x), prior, tau)
        return predict
