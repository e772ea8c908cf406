"""The ``backbone`` option of cRT and LWS: ``frozen`` (Kang et al., the default) against ``finetune``
(BagofTricks-LT's stored cRT and LWS configs, whose BACKBONE.FREEZE is left False). A measurement aid, so its tests
check that it does what it says and that the default regime is untouched by its existence."""
import pytest
import torch

from ltbench.errors import LtbenchError
from ltbench.models import create_network
from ltbench.registry import get_method
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


def test_finetune_moves_a_copy_of_the_extractor_and_predicts_with_it(tmp_path):
    ctx = _ctx(tmp_path, "crt", backbone="finetune")
    net = ctx.stage1.network
    before = {k: v.clone() for k, v in net.state_dict().items()}
    log_probs = fit_and_predict(get_method("crt")(backbone="finetune"), ctx)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # stage 1 itself untouched
    assert ctx.info["stage2_backbone"] == "finetune"
    frozen_ctx = _ctx(tmp_path / "frozen", "crt")
    frozen = fit_and_predict(get_method("crt")(), frozen_ctx)
    assert "stage2_backbone" not in frozen_ctx.info                               # default runs record nothing new
    assert log_probs.shape == frozen.shape == (200, 10)
    assert not torch.allclose(log_probs, frozen, atol=1e-3)                       # the backbone did learn


def test_lws_finetune_trains_the_scales_and_the_extractor_but_not_the_stage1_classifier(tmp_path):
    ctx = _ctx(tmp_path, "lws", backbone="finetune")
    w = ctx.stage1.network.head.weight.detach().clone()
    fit_and_predict(get_method("lws")(backbone="finetune"), ctx)
    assert torch.equal(ctx.stage1.network.head.weight, w)                        # the classifier stays frozen
    assert ctx.info["stage2_backbone"] == "finetune"
    assert any(abs(s - 1.0) > 1e-6 for s in ctx.info["lws_scales"])              # the scales learned


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
