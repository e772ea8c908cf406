"""cRT's ``backbone`` option: ``frozen`` (Kang et al., the default) against ``finetune`` (BagofTricks-LT's stored cRT
config, whose BACKBONE.FREEZE is left False). A measurement aid, so its tests check that it does what it says and
that the default regime is untouched by its existence."""
import pytest
import torch

from ltbench.errors import LtbenchError
from ltbench.models import create_network
from ltbench.registry import get_method
from ltbench.train.head import head_on_finetuned_extractor, head_on_frozen_extractor
from test_methods import _ctx
from test_protocol_fixes import fit_and_predict


def test_default_is_the_frozen_backbone_of_classifier_balancing():
    assert get_method("crt").defaults["backbone"] == "frozen"
    assert "backbone" not in get_method("lws").defaults       # LWS learns scales only: no such choice


@pytest.mark.parametrize("bad", [{"features": "cached"}, {"extractor_bn": "eval"}])
def test_finetune_refuses_options_it_cannot_honour(bad):
    with pytest.raises(LtbenchError, match="backbone=finetune"):
        get_method("crt")(backbone="finetune", **bad)


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
