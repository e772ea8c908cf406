"""compile / CUDA-graph options: ignored with a message where they cannot apply, a failing compile falls back to
eager on the first step, the options do not change the stage-1 cache key; on CUDA, graphed steps match eager."""
from __future__ import annotations

import pytest
import torch

from ltbench.config import resolve
from ltbench.models import create_network
from ltbench.train import accel
from ltbench.train.accel import CompiledOrEager, accelerate


def test_plain_and_cpu_cuda_graphs_return_the_network_itself():
    net = create_network("resnet32", 10)
    msgs: list[str] = []
    assert accelerate(net, torch.device("cpu"), echo=msgs.append) is net
    assert accelerate(net, torch.device("cpu"), cuda_graphs=True, echo=msgs.append) is net
    assert any("cuda_graphs needs a CUDA device" in m for m in msgs)


def test_failing_compile_falls_back_to_eager_on_first_call(monkeypatch):
    net = create_network("resnet32", 10).eval()

    def broken(*a, **k):
        def f(x):
            raise RuntimeError("backend exploded")
        return f
    monkeypatch.setattr(accel.torch, "compile", broken)
    msgs: list[str] = []
    model = accelerate(net, torch.device("cpu"), compile=True, echo=msgs.append)
    assert isinstance(model, CompiledOrEager)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))
    assert not model.active and any("backend exploded" in m for m in msgs)


def test_error_after_first_call_propagates():
    net = create_network("resnet32", 10).eval()
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] > 1:
            raise ValueError("real error")
        return net(x)
    model = CompiledOrEager(flaky, net, lambda s: None, mark_steps=False)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
        with pytest.raises(ValueError, match="real error"):
            model(torch.randn(1, 3, 32, 32))


def test_execution_options_keep_the_stage1_cache_key():
    a = resolve("crt", "cifar10-lt", 100, "sgd", 0, "cifar")
    b = resolve("crt", "cifar10-lt", 100, "sgd", 0, "cifar")
    b.stage1.compile, b.stage1.cuda_graphs = True, True
    assert a.stage1_key() == b.stage1_key()
    b.stage1.lr = 0.2
    assert a.stage1_key() != b.stage1_key()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_training_steps_match_eager():
    """Three SGD steps (incl. a partial last batch) through CUDA graphs give the eager losses (fp32)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    nets = [create_network("resnet32", 10).to(dev) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    models = [nets[0], accelerate(nets[1], dev, cuda_graphs=True)]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(b, 3, 32, 32, generator=g).to(dev) for b in (64, 64, 40, 64)]
    ys = [torch.randint(0, 10, (len(x),), generator=g).to(dev) for x in xs]
    losses = []
    for net, model in zip(nets, models):
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        out = []
        for x, y in zip(xs, ys):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            out.append(float(loss))
        losses.append(out)
    assert models[1].active
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=2e-3, atol=2e-3)


def test_compile_flag_reaches_stage1_and_finished_runs_still_count(tmp_path, monkeypatch):
    """`--compile` / `--no-compile` on run and grid set stage1.compile (default: the preset's, off), and being an
    execution option it neither renames the stage-1 artifact nor makes a finished eager run read as another run."""
    from click.testing import CliRunner
    from bench import cli
    from ltbench import runner

    seen = []

    class Stop(Exception):
        pass

    def fake_execute(cfg, **kw):
        seen.append(cfg)
        raise Stop
    monkeypatch.setattr(runner, "execute", fake_execute)
    base = ["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--results", str(tmp_path / "r"),
            "--device", "cpu"]
    for flag, want in ((["--compile"], True), (["--no-compile"], False), ([], False)):
        res = CliRunner().invoke(cli, base + flag)
        assert isinstance(res.exception, Stop), res.output
        assert seen[-1].stage1.compile is want
    assert seen[0].stage1_key() == seen[1].stage1_key()
    monkeypatch.undo()
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    res = CliRunner().invoke(cli, base + ["--epochs", "1", "--stage2-epochs", "1", "--quiet"])  # eager, finished
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce",
                                   "--stage1", "sgd", "--epochs", "1", "--stage2-epochs", "1", "--results",
                                   str(tmp_path / "r"), "--device", "cpu", "--compile", "--dry-run",
                                   "--calibration-steps", "0"])
    assert res.exit_code == 0, res.output
    assert "1/1 done  (done)" in res.output and "differs" not in res.output
    import ltbench.grid as grid_mod
    plan, planned = grid_mod.build_plan, []
    monkeypatch.setattr(grid_mod, "build_plan", lambda *a, **k: planned.append(plan(*a, **k)) or planned[-1])
    for flag, want in (("--compile", True), ("--no-compile", False)):
        res = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce,crt",
                                       "--results", str(tmp_path / "g"), "--device", "cpu", flag, "--dry-run",
                                       "--calibration-steps", "0"])
        assert res.exit_code == 0, res.output
        assert {r.cfg.stage1.compile for g in planned[-1] for r in g.runs} == {want}
