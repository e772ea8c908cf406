"""``tau_norm``: tau-normalised classifier (Kang et al. 2020): logits_k = z . w_k / ||w_k||^tau, no training.

The bias is dropped by default (``keep_bias=false``), as Kang's ``tau_norm.py``, which loads the bias and never
uses it: kept, a larger tau amplifies the head-favouring bias and tau-norm cannot help the tail.

Choosing tau (CIFAR-LT has no validation split; the test set is never used):

* ``selection='holdout'`` (default): sweep ``taus`` (0, 0.1, ..., 2.0, as Kang's script) and take the best
  balanced (mean per-class) accuracy on ``holdout_fraction`` of each class's *training* images. Stage 1 trained on
  those images, and a network that has memorised them measures its fit, not how tau generalises. Two signs of
  that make the sweep *degenerate*: its spread (best minus worst) is below ``min_spread`` points (measured with the
  bias kept: 100 % for every tau from 0 to 2), or its best score reaches ``ceiling`` (measured without the bias,
  CIFAR-100-LT IF100 at 200 epochs: 100 % for tau 0 to 0.3, falling to 82.9 % at tau 2, so the spread rule alone
  let it pick tau = 0 while the test-set optimum was tau = 1.0). A degenerate sweep is not resolved to its
  smallest best tau but reported (``tau_selection`` in ``config.json``, a line on the console) and ``tau``
  (default 1.0, full normalisation) is used, or, with ``on_degenerate='error'``, the run stops.
* ``selection='fixed'``: use ``tau``.

The sweep, the spread and the rule that chose tau are saved in ``config.json`` (``method_info``). For readers who
set this beside published tau-norm rows that chose tau on the test set, ``tau_norm_oracle`` is that row, clearly
marked (never a default).
"""
import numpy as np
import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.evaluate import FeaturePredictor
from ltbench.heads import tau_normalized_logits
from ltbench.method import Method, Stage2Context
from ltbench.options import Option
from ltbench.train.features import base_features

DEFAULT_TAUS = [round(0.1 * i, 1) for i in range(21)]

TAU_OPTIONS = (
    Option("taus", "floats", DEFAULT_TAUS, "the tau values swept", low=0.0),
    Option("keep_bias", "bool", False, "add the stage-1 bias (Kang's tau_norm.py drops it)"),
)


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


def holdout_sweep(z: torch.Tensor, y: np.ndarray, w: torch.Tensor, b, taus: list[float]) -> list[dict]:
    """Balanced accuracy (%) of every tau on features ``z`` with labels ``y``."""
    rows = []
    for tau in taus:
        pred = tau_normalized_logits(z, w, b, tau).argmax(1).cpu().numpy()
        rows.append({"tau": float(tau), "heldout_balanced_acc": 100.0 * balanced_accuracy(pred, y)})
    return rows


def degenerate_reason(accs: list[float], min_spread: float, ceiling: float) -> str | None:
    """Why a held-out sweep measures memorisation rather than tau (None when it is informative)."""
    spread = max(accs) - min(accs)
    if spread < min_spread:
        return f"spread {spread:.2f} < {min_spread} points"
    if max(accs) >= ceiling:
        return f"best {max(accs):.2f} >= ceiling {ceiling} points, {sum(a == max(accs) for a in accs)} taus tied"
    return None


def choose_tau(sweep: list[dict], selection: str, fixed_tau: float, min_spread: float, on_degenerate: str,
               ceiling: float = 99.0) -> tuple[float, str, float | None]:
    """(tau, how it was chosen, sweep spread in points). Ties go to the smaller tau."""
    if selection == "fixed":
        return fixed_tau, "fixed", None
    accs = [r["heldout_balanced_acc"] for r in sweep]
    spread = max(accs) - min(accs)
    why = degenerate_reason(accs, min_spread, ceiling)
    if why:
        if on_degenerate == "error":
            raise LtbenchError(f"tau_norm: the held-out sweep cannot tell the taus apart ({why}; the stage-1 "
                               "network has memorised its training images). Use --option selection=fixed "
                               "--option tau=T, or --option on_degenerate=fixed.")
        return fixed_tau, f"fixed: held-out sweep degenerate ({why})", spread
    best = max(sweep, key=lambda r: (r["heldout_balanced_acc"], -r["tau"]))
    return best["tau"], "holdout", spread


class TauNorm(Method):
    """tau-norm: w_k / ||w_k||^tau, tau chosen on a held-out training split (Kang et al. 2020)."""

    name = "tau_norm"
    label = "τ-norm"
    order = 30
    # runs before the ceiling rule: only the spread made a sweep degenerate; before the spread rule (be5958f),
    # nothing did (the sweep's argmax was taken as it came)
    legacy_options = {"ceiling": 101.0, "min_spread": 0.0}
    option_specs = TAU_OPTIONS + (
        Option("selection", "str", "holdout", "how tau is chosen (never on the test set)",
               choices=("holdout", "fixed")),
        Option("tau", "float", 1.0, "tau for selection=fixed, and when the held-out sweep is degenerate", low=0.0),
        Option("holdout_fraction", "float", 0.2, "share of each class's training images held out", low=0.0,
               high=1.0, low_open=True, high_open=True),
        Option("min_spread", "float", 0.5, "a held-out sweep whose best minus worst balanced accuracy (points) is "
               "below this cannot tell the taus apart", low=0.0),
        Option("ceiling", "float", 99.0, "a held-out sweep whose best balanced accuracy (points) reaches this "
               "has memorised the held-out images (above 100: never)", low=0.0),
        Option("on_degenerate", "str", "fixed", "a degenerate held-out sweep: use tau (reported) or stop",
               choices=("fixed", "error")),
    )

    def fit(self, ctx: Stage2Context):
        o = self.options
        f = base_features(ctx)
        head = ctx.stage1.network.head
        w, b = head.weight.detach(), (head.bias.detach() if o["keep_bias"] else None)
        sweep: list[dict] = []
        if o["selection"] == "holdout":
            y = f["train_y"].cpu().numpy()
            hold = stratified_holdout(y, o["holdout_fraction"], np.random.default_rng(ctx.cfg.seed))
            sweep = holdout_sweep(f["train"][torch.as_tensor(hold, device=ctx.device)], y[hold], w, b, o["taus"])
            ctx.info["heldout_size"] = int(len(hold))
        tau, how, spread = choose_tau(sweep, o["selection"], o["tau"], o["min_spread"], o["on_degenerate"],
                                     o["ceiling"])
        ctx.info.update({"tau": tau, "tau_selection": how, "tau_sweep": sweep, "tau_sweep_spread": spread})
        ctx.echo(f"stage 2 [tau_norm]: tau = {tau} ({how})")
        if how.startswith("fixed:"):
            ctx.echo("warning: tau_norm's held-out sweep could not tell the taus apart; "
                     f"used the fixed tau = {tau} (recorded as method_info.tau_selection)")
        return FeaturePredictor("base", lambda z: F.log_softmax(tau_normalized_logits(z, w, b, tau), dim=1))
