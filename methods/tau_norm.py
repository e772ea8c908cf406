"""``tau_norm``: tau-normalised classifier (Kang et al. 2020): w_k / ||w_k||^tau, no training.

tau is swept over ``taus`` (default 0, 0.1, ..., 2.0, as Kang's script) and chosen by balanced (mean per-class)
accuracy on a held-out split of the *training* set, never on the test set: ``holdout_fraction`` (default 0.2) of
each class's training images (at least one). The stage-1 network saw those images, so the held-out accuracy is
optimistic; on datasets with a validation list the same criterion could use it instead. Ties go to the smaller
tau. The whole sweep is saved in ``config.json`` (``method_info.tau_sweep``).

``keep_bias`` (default true) keeps the stage-1 bias, so tau = 0 is exactly the stage-1 classifier; Kang's script
drops the bias (``keep_bias=false``).
"""
import numpy as np
import torch
import torch.nn.functional as F

from ltbench.heads import tau_normalized_logits
from ltbench.method import Method, Stage2Context
from ltbench.registry import register_method
from ltbench.train.features import base_features


def stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least one image per class)."""
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(idx))))
        out.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(out))


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


@register_method("tau_norm")
class TauNorm(Method):
    """tau-norm: w_k / ||w_k||^tau, tau chosen on a held-out training split (Kang et al. 2020)."""

    name = "tau_norm"
    defaults = {"taus": [round(0.1 * i, 1) for i in range(21)], "holdout_fraction": 0.2, "keep_bias": True}

    def fit(self, ctx: Stage2Context):
        f = base_features(ctx)
        head = ctx.stage1.network.head
        w, b = head.weight.detach(), (head.bias.detach() if self.options["keep_bias"] else None)
        y = f["train_y"].cpu().numpy()
        rng = np.random.default_rng(ctx.cfg.seed)
        hold = stratified_holdout(y, self.options["holdout_fraction"], rng)
        z_hold, y_hold = f["train"][torch.as_tensor(hold, device=ctx.device)], y[hold]
        sweep = []
        for tau in self.options["taus"]:
            pred = tau_normalized_logits(z_hold, w, b, tau).argmax(1).cpu().numpy()
            sweep.append({"tau": float(tau), "heldout_balanced_acc": 100.0 * balanced_accuracy(pred, y_hold)})
        best = max(sweep, key=lambda r: (r["heldout_balanced_acc"], -r["tau"]))
        ctx.info.update({"tau": best["tau"], "tau_sweep": sweep, "heldout_size": int(len(hold))})
        ctx.echo(f"stage 2 [tau_norm]: tau = {best['tau']} (held-out balanced acc {best['heldout_balanced_acc']:.2f}%)")
        return F.log_softmax(tau_normalized_logits(f["test"], w, b, best["tau"]), dim=1)
