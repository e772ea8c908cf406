"""SWA / SWAG moments against analytic values of known weight sequences."""
import copy

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from ltbench.models import create_network
from ltbench.train.swag import Swag, flat_params, load_flat_params, prefix_mask


def test_mean_and_variance_of_an_arithmetic_sequence():
    # w_t = a + t * b, t = 1..T: mean a + b (T+1)/2, population variance b^2 (T^2 - 1) / 12
    a, b, T = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.1, 0.3, -0.2]), 9
    s = Swag(3, rank=4)
    for t in range(1, T + 1):
        s.collect_vector(a + t * b)
    assert s.n == T
    torch.testing.assert_close(s.mean.float(), a + b * (T + 1) / 2)
    torch.testing.assert_close(s.variance.float(), b ** 2 * (T * T - 1) / 12, rtol=1e-5, atol=1e-9)
    # deviation columns: the last K of w_t - mean_t (running mean including w_t) = b (t - 1) / 2
    assert s.dev.shape == (4, 3)
    for row, t in zip(s.dev, range(T - 3, T + 1)):
        torch.testing.assert_close(row, b * (t - 1) / 2)


def test_zero_scale_sample_is_the_swa_mean():
    s = Swag(5, rank=3)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        s.collect_vector(torch.randn(5, generator=g))
    torch.testing.assert_close(s.sample(0.0, torch.Generator().manual_seed(2)), s.mean)


def test_sample_covariance_approaches_the_swag_covariance():
    d, k, scale = 4, 3, 0.5
    s = Swag(d, rank=k)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        s.collect_vector(torch.randn(d, generator=g) * torch.tensor([1.0, 0.5, 2.0, 0.1]))
    # the covariance written out independently: scale * (diag(E[w^2] - E[w]^2) + D^T D / (K - 1))
    dev = s.dev.double()
    want = scale * (torch.diag(s.sq_mean - s.mean ** 2) + dev.T @ dev / (k - 1))
    gen = torch.Generator().manual_seed(3)
    samples = torch.stack([s.sample(scale, gen) for _ in range(40000)])
    emp = torch.cov(samples.T)
    assert torch.allclose(samples.mean(0), s.mean, atol=0.03)
    assert torch.allclose(emp, want, atol=0.03 * float(want.abs().max()))
    torch.testing.assert_close(s.covariance() * scale, want)


def test_diag_only_sample_has_diagonal_covariance():
    s = Swag(3, rank=3)
    for v in ([0.0, 0, 0], [1.0, 1, 1], [2.0, 0, 1], [0.0, 2, 2]):
        s.collect_vector(torch.tensor(v))
    gen = torch.Generator().manual_seed(0)
    emp = torch.cov(torch.stack([s.sample(1.0, gen, diag_only=True) for _ in range(30000)]).T)
    torch.testing.assert_close(emp, torch.diag(s.variance), atol=0.04, rtol=0.05)


def test_swa_average_equals_mean_of_snapshots_and_torch_averaged_model():
    torch.manual_seed(0)
    net = create_network("resnet32", 10)
    swag = Swag.for_network(net, rank=2)
    ref = AveragedModel(net)
    ref.n_averaged.zero_()
    snaps = []
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        swag.collect(net)
        ref.update_parameters(net)
        snaps.append(flat_params(net).double())
    torch.testing.assert_close(swag.mean, torch.stack(snaps).mean(0))
    torch.testing.assert_close(swag.mean.float(), flat_params(ref.module))


def test_mask_perturbs_only_the_extractor_and_round_trips():
    net = create_network("resnet32", 10)
    swag = Swag.for_network(net, rank=2)
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        swag.collect(net)
    mask = prefix_mask(net)
    head_n = sum(p.numel() for p in net.head.parameters())
    assert mask[-head_n:].sum() == 0 and mask[:-head_n].all()
    w = swag.sample(0.5, torch.Generator().manual_seed(0), mask=mask)
    torch.testing.assert_close(w[-head_n:], swag.mean[-head_n:])
    assert not torch.allclose(w[:-head_n], swag.mean[:-head_n])
    other = copy.deepcopy(net)
    load_flat_params(other, w)
    torch.testing.assert_close(flat_params(other), w.float())
    restored = Swag.from_state_dict(swag.state_dict())
    assert restored.n == swag.n and torch.equal(restored.dev, swag.dev)
