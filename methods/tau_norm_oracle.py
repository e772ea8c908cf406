"""``tau_norm_oracle``: tau-norm with tau chosen on the *test* set — an oracle row, never a default.

Some published tau-norm numbers on CIFAR-LT chose tau on the test set (there is no validation split). This row
lets a reader set ltbench beside them: the method returns one candidate prediction per tau, and the evaluator
(which alone holds the test labels) keeps the candidate with the best test accuracy and records the whole test
sweep (``method_info.oracle_sweep``). Tables mark it as an oracle.
"""
import torch.nn.functional as F

from ltbench.heads import tau_normalized_logits
from ltbench.method import Method, OracleCandidates, Stage2Context
from ltbench.evaluate import FeaturePredictor
from methods.tau_norm import TAU_OPTIONS


class TauNormOracle(Method):
    """tau-norm with tau chosen by test accuracy (an oracle, for comparison with such published rows)."""

    name = "tau_norm_oracle"
    label = "τ-norm (oracle τ, test set)"
    order = 31
    oracle = True
    option_specs = TAU_OPTIONS

    def fit(self, ctx: Stage2Context):
        head = ctx.stage1.network.head
        w, b = head.weight.detach(), (head.bias.detach() if self.options["keep_bias"] else None)

        def at(t: float) -> FeaturePredictor:
            return FeaturePredictor("base", lambda z: F.log_softmax(tau_normalized_logits(z, w, b, t), dim=1))
        return OracleCandidates("tau", {float(t): at(float(t)) for t in self.options["taus"]})
