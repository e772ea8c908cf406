"""The batched tensor augmentation (``random_crop_flip`` + ``normalize``) against the torchvision reference
(``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` + ``ToTensor()`` + ``Normalize``), as the LDAM-DRW and
classifier-balancing code train: exact output for pinned offsets, the offset/flip distribution (chi-square, fixed
seeds), and per-pixel moments of many augmented copies of a real image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from ltbench.data.augment import crop_flip_at, normalize, random_crop_flip

PAD = 4
POSITIONS = (2 * PAD + 1) ** 2  # 81 crop offsets


def chi2_sf(stat: float, df: int) -> float:
    """Upper tail of the chi-square distribution (no scipy here): the regularised upper incomplete gamma."""
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def coded_image() -> torch.Tensor:
    """uint8 [3, 32, 32]: channel 0 = row + 1, channel 1 = column + 1, channel 2 = 200. Zero padding stays 0, so
    an augmented copy reveals its crop offset and flip (offsets recovered by matching the codes)."""
    r = torch.arange(32)[:, None].expand(32, 32) + 1
    c = torch.arange(32)[None, :].expand(32, 32) + 1
    return torch.stack([r, c, torch.full((32, 32), 200)]).to(torch.uint8)


def recover(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(oy, ox, flip) of each augmented coded image [B, 3, 32, 32] (uint8)."""
    out = out.long()
    b = out.shape[0]
    inside = out[:, 2] == 200                                   # pixels that came from the image, not the pad
    i = inside.any(2).float().argmax(1)                         # first image row in the crop
    j = inside.any(1).float().argmax(1)                         # first image column in the crop
    ar = torch.arange(b)
    oy = (out[ar, 0, i, j] - 1) + PAD - i
    col_first = out[ar, 1, i, j]
    # is the next column to the right smaller? then the copy is mirrored
    jn = torch.clamp(j + 1, max=31)
    flip = out[ar, 1, i, jn] < col_first
    ox_plain = (col_first - 1) + PAD - j
    ox_flip = (col_first - 1) + PAD - (31 - j)
    return oy, torch.where(flip, ox_flip, ox_plain), flip


def reference_transform() -> T.Compose:
    return T.Compose([T.RandomCrop(32, padding=PAD), T.RandomHorizontalFlip()])


def test_recover_is_exact_on_pinned_offsets():
    img = coded_image()[None].repeat(2 * POSITIONS, 1, 1, 1)
    oy = torch.arange(POSITIONS).repeat(2) // 9
    ox = torch.arange(POSITIONS).repeat(2) % 9
    flip = torch.arange(2 * POSITIONS) >= POSITIONS
    got = recover(crop_flip_at(img, oy, ox, flip))
    assert torch.equal(got[0], oy) and torch.equal(got[1], ox) and torch.equal(got[2], flip)


@pytest.mark.parametrize("flip", [False, True])
def test_pinned_offsets_equal_torchvision_functional(flip):
    """For every one of the 81 offsets, our gather equals TF.crop of the zero-padded image (then TF.hflip)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (POSITIONS, 3, 32, 32), generator=g, dtype=torch.uint8)
    oy, ox = torch.arange(POSITIONS) // 9, torch.arange(POSITIONS) % 9
    ours = crop_flip_at(x, oy, ox, torch.full((POSITIONS,), flip))
    for k in range(POSITIONS):
        ref = TF.crop(TF.pad(x[k], [PAD]), int(oy[k]), int(ox[k]), 32, 32)
        if flip:
            ref = TF.hflip(ref)
        assert torch.equal(ours[k], ref), (k, int(oy[k]), int(ox[k]))
    # and through PIL, the path the reference pipeline takes
    pil = Image.fromarray(x[5].permute(1, 2, 0).numpy())
    ref = TF.crop(TF.pad(pil, PAD), int(oy[5]), int(ox[5]), 32, 32)
    ref = TF.hflip(ref) if flip else ref
    assert np.array_equal(np.asarray(ref), ours[5].permute(1, 2, 0).numpy())


def _offset_counts(oy, ox, flip) -> torch.Tensor:
    return torch.bincount((oy * 9 + ox) * 2 + flip.long(), minlength=2 * POSITIONS)


def test_offsets_uniform_and_flip_half():
    """Chi-square with fixed seeds: offsets uniform over the 81 positions, flip rate 1/2, jointly over 162 cells."""
    n = 81 * 2 * 150
    x = coded_image()[None].repeat(n, 1, 1, 1)
    oy, ox, flip = recover(random_crop_flip(x, torch.Generator().manual_seed(0)))
    pos = torch.bincount(oy * 9 + ox, minlength=POSITIONS).double()
    e = n / POSITIONS
    assert chi2_sf(float(((pos - e) ** 2 / e).sum()), POSITIONS - 1) > 1e-3
    joint = _offset_counts(oy, ox, flip).double()
    e2 = n / (2 * POSITIONS)
    assert chi2_sf(float(((joint - e2) ** 2 / e2).sum()), 2 * POSITIONS - 1) > 1e-3
    rate = float(flip.double().mean())
    assert abs(rate - 0.5) < 4 * (0.25 / n) ** 0.5
    assert int(oy.min()) == 0 and int(oy.max()) == 2 * PAD and int(ox.min()) == 0 and int(ox.max()) == 2 * PAD


def test_offset_distribution_matches_torchvision_reference():
    """Two-sample chi-square (162 cells): our (offset, flip) histogram vs torchvision's RandomCrop + flip on PIL."""
    n_ref = 81 * 2 * 30
    torch.manual_seed(1)  # torchvision's transforms draw from the global generator
    tf = reference_transform()
    pil = Image.fromarray(coded_image().permute(1, 2, 0).numpy())
    ref = torch.stack([torch.from_numpy(np.asarray(tf(pil)).copy()).permute(2, 0, 1) for _ in range(n_ref)])
    a = _offset_counts(*recover(ref)).double()
    n_ours = 81 * 2 * 90
    b = _offset_counts(*recover(random_crop_flip(coded_image()[None].repeat(n_ours, 1, 1, 1),
                                                  torch.Generator().manual_seed(2)))).double()
    ka, kb = (b.sum() / a.sum()) ** 0.5, (a.sum() / b.sum()) ** 0.5
    stat = float(((ka * a - kb * b) ** 2 / (a + b)).sum())
    assert chi2_sf(stat, 2 * POSITIONS - 1) > 1e-3
    # the reference also covers every cell: the same support
    assert bool((a > 0).all()) and bool((b > 0).all())


def _tiny_image() -> torch.Tensor:
    from ltbench.registry import get_dataset
    return get_dataset("cifar10-lt-tiny").load().train_x[7]


def test_per_pixel_moments_match_reference():
    """Mean and variance of every pixel over many augmented copies of a real image agree with the reference
    transform applied many times, within 5 standard errors (3072 pixels; the tolerance comes from the samples)."""
    img = _tiny_image()
    n_ours, n_ref = 20000, 4000
    ours = random_crop_flip(img[None].repeat(n_ours, 1, 1, 1), torch.Generator().manual_seed(5)).double()
    torch.manual_seed(6)
    tf = reference_transform()
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    ref = torch.stack([torch.from_numpy(np.asarray(tf(pil)).copy()).permute(2, 0, 1) for _ in range(n_ref)]).double()
    for a, b in ((ours, ref),):
        ma, mb = a.mean(0), b.mean(0)
        va, vb = a.var(0), b.var(0)
        se_mean = (va / n_ours + vb / n_ref).sqrt().clamp_min(1e-9)
        assert float(((ma - mb).abs() / se_mean).max()) < 5.0
        # SE of a sample variance: sqrt((m4 - var^2) / n)
        m4a, m4b = ((a - ma) ** 4).mean(0), ((b - mb) ** 4).mean(0)
        se_var = ((m4a - va ** 2).clamp_min(0) / n_ours + (m4b - vb ** 2).clamp_min(0) / n_ref).sqrt().clamp_min(1e-6)
        assert float(((va - vb).abs() / se_var).max()) < 5.0
    # sanity: the test can fail: a crop-only pipeline (no flips) has clearly different moments
    noflip = crop_flip_at(img[None].repeat(n_ours, 1, 1, 1), torch.randint(0, 9, (n_ours,)),
                          torch.randint(0, 9, (n_ours,)), torch.zeros(n_ours, dtype=torch.bool)).double()
    se = (noflip.var(0) / n_ours + ref.var(0) / n_ref).sqrt().clamp_min(1e-9)
    assert float(((noflip.mean(0) - ref.mean(0)).abs() / se).max()) > 5.0


def test_normalize_equals_totensor_normalize():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])
    ours = normalize(x, mean, std)
    tf = T.Compose([T.ToTensor(), T.Normalize(mean.tolist(), std.tolist())])
    ref = torch.stack([tf(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in x])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_augmentation_equals_cpu():
    """The same generator gives the same augmented batch on the GPU as on the CPU (draws happen on the CPU)."""
    x = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = random_crop_flip(x, torch.Generator().manual_seed(9))
    b = random_crop_flip(x.cuda(), torch.Generator().manual_seed(9)).cpu()
    assert torch.equal(a, b)
