"""The ``backbone`` option of cRT and LWS: ``frozen`` (Kang et al., the default) against ``finetune``
(BagofTricks-LT's stored cRT and LWS configs, whose BACKBONE.FREEZE is left False). A measurement aid, so its tests
check that it does what it says and that the default regime is untouched by its existence."""
import pytest
import torch

from ltbench.errors import LtbenchError
from ltbench.models import create_network
from ltbench.registry import get_method
from ltbench.train import loop
from ltbench.train.head import head_on_finetuned_extractor, head_on_frozen_extractor
from test_methods import _ctx
from test_protocol_fixes import fit_and_predict


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_default_is_the_frozen_backbone_of_classifier_balancing(method):
    assert get_method(method).defaults["backbone"] == "frozen"


@pytest.mark.parametrize("method", ["crt", "lws"])
@pytest.mark.parametrize("bad", [{"features": "cached"}, {"extractor_bn": "eval"}])
def test_finetune_refuses_options_it_cannot_honour(method, bad):
    with pytest.raises(LtbenchError, match="backbone=finetune"):
        get_method(method)(backbone="finetune", **bad)


def test_finetune_loss_sends_gradient_into_every_extractor_parameter_and_frozen_into_none():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(10, (8,))
    for finetune in (False, True):
        ext = create_network("resnet32", 10).extractor
        for p in ext.parameters():
            p.requires_grad_(finetune)
        head = torch.nn.Linear(64, 10)
        fn = head_on_finetuned_extractor(head, ext) if finetune else head_on_frozen_extractor(head, ext, "train")
        loss, correct, n = fn((x, y))
        loss.backward()
        grads = [p.grad for p in ext.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads) if finetune else all(g is None for g in grads)
        # the loss is the cross-entropy of head(extractor(x)), recomputed here independently
        ext.train()
        with torch.no_grad():
            want = torch.nn.functional.cross_entropy(head(ext(x)), y)
        assert n == 8 and abs(loss.item() - want.item()) < 1e-4


def _params(state: dict, prefix: str = "") -> dict:
    """The extractor's parameters (weights, not BN buffers, which bn=train re-estimates anyway) of a state dict."""
    names = {n for n, _ in create_network("resnet32", 10).extractor.named_parameters()}
    return {n: state[prefix + n] for n in names}


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_finetune_trains_a_copy_of_the_extractor_and_frozen_leaves_it(tmp_path, monkeypatch, method):
    """The fine-tuned extractor is in the stage-2 checkpoint: its weights moved under finetune and not under frozen,
    and stage 1's own network is untouched either way. fp32 on both sides, so precision cannot make them differ."""
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    moved = {}
    for backbone in ("frozen", "finetune"):
        ctx = _ctx(tmp_path / backbone, method, backbone=backbone)
        net = ctx.stage1.network
        before = {k: v.clone() for k, v in net.state_dict().items()}
        fit_and_predict(get_method(method)(backbone=backbone), ctx)
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # stage 1 itself untouched
        ck = torch.load(ctx.workdir / f"{method}-ckpt.pt", weights_only=False)["module"]
        trained, start = _params(ck, "extractor."), _params(before, "extractor.")
        moved[backbone] = [n for n in start if not torch.equal(trained[n], start[n])]
        assert ctx.info.get("stage2_backbone") == (None if backbone == "frozen" else "finetune")
        if backbone == "finetune":
            assert ctx.info["stage2_precision"] == "fp32"
    assert moved["frozen"] == [] and len(moved["finetune"]) == len(start)
    if method == "lws":
        assert any(abs(s - 1.0) > 1e-6 for s in ctx.info["lws_scales"])              # the scales learned too


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_a_bad_combination_is_refused_when_the_config_is_resolved(method):
    """Before any compute: the grid and ``run --method all`` resolve every config first."""
    from ltbench.config import resolve
    with pytest.raises(LtbenchError, match="backbone=finetune.*features=cached"):
        resolve(method, "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu",
                method_options={"backbone": "finetune", "features": "cached"})


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_a_run_recorded_before_the_option_is_the_frozen_run_and_not_the_finetune_one(tmp_path, method):
    """Old configs lack ``backbone``: they are the frozen regime, so asking for finetune must not skip them."""
    from ltbench.config import resolve
    from ltbench.runner import finished_run_differs
    from test_run_conflicts import _recorded
    frozen = resolve(method, "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu")
    old = _recorded(tmp_path, frozen, drop_options=("backbone",))
    assert finished_run_differs(frozen, old) is None
    ft = resolve(method, "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu",
                 method_options={"backbone": "finetune"})
    why = finished_run_differs(ft, old)
    assert why is not None and "option backbone='frozen' there, 'finetune' asked" in why


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_the_default_backbone_leaves_the_stage2_cache_key_as_before_the_option_existed(method):
    """Runs cached before the option keep their stage-2 checkpoints; finetune gets a key of its own."""
    import hashlib
    import json

    from ltbench.config import resolve
    from ltbench.paths import stage2_key
    cfg = resolve(method, "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu")
    before = {k: v for k, v in cfg.method_options.items() if k != "backbone"}   # the options as they were
    payload = json.dumps({"method": method, "options": before, "stage2": cfg.stage2.recorded(),
                          "eval": cfg.eval_batch_size}, sort_keys=True, default=str)
    assert stage2_key(cfg) == hashlib.sha256(payload.encode()).hexdigest()[:12]
    ft = resolve(method, "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu",
                 method_options={"backbone": "finetune"})
    assert stage2_key(ft) != stage2_key(cfg)
