"""``ce``: the stage-1 network as it is (no re-training).

On ``--stage1 sgd`` this is plain cross-entropy training (instance-balanced, cosine to zero); on
``--stage1 swa`` it is the SWA network (averaged weights, recomputed BN statistics, averaged head).
"""
from ltbench.evaluate import log_softmax_predictor
from ltbench.method import Method, Stage2Context


class CE(Method):
    """The stage-1 network as it is: plain CE on SGD, the SWA model on SWA."""

    name = "ce"
    label = "CE"
    order = 0

    def fit(self, ctx: Stage2Context):
        return log_softmax_predictor(ctx.stage1.network.eval())
