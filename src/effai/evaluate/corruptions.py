"""Image corruptions for robustness curves, after Hendrycks & Dietterich 2019 (ImageNet-C),
scaled for small grey images with pixel values in [0, 1]; and token corruptions (random
substitution, dropout to padding) for token sequences.

Each corruption takes a batch (N, C, H, W), a severity 1..5 and a seed, and returns a new
batch clipped to [0, 1]. The same seed gives the same noise, so every variant of a study is
tested on exactly the same corrupted images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from effai.errors import InputError, suggest

# Severity 1..5 parameters (index severity-1).
_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
_BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)  # fraction of the original contrast kept
_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to every pixel
_PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)  # fraction of the side length kept


def gaussian_noise(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + torch.randn(x.shape, generator=g) * _NOISE_STD[severity - 1]).clamp(0, 1)


def blur(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    sigma = _BLUR_SIGMA[severity - 1]
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    # Separable Gaussian: blur rows, then columns, one kernel per channel (groups=c).
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return out.clamp(0, 1)


def contrast(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * _CONTRAST[severity - 1] + mean).clamp(0, 1)


def brightness(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    return (x + _BRIGHTNESS[severity - 1]).clamp(0, 1)


def pixelate(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    h, w = x.shape[-2:]
    f = _PIXELATE[severity - 1]
    small = F.interpolate(x, size=(max(1, int(h * f)), max(1, int(w * f))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest").clamp(0, 1)


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "contrast": contrast,
    "brightness": brightness,
    "pixelate": pixelate,
}


# Token sequences (N, L) of integer ids, id 0 the padding (BERT's [PAD], effai's data sets):
# the share of real tokens replaced, per severity.
_TOKEN_SHARE = (0.05, 0.1, 0.2, 0.3, 0.5)


def _token_positions(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """A seeded choice of real (non-padding) positions, `_TOKEN_SHARE[severity - 1]` of them."""
    return (torch.rand(x.shape, generator=g) < _TOKEN_SHARE[severity - 1]) & (x != 0)


def token_substitution(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Typos and unknown words: chosen tokens become random ids from 1 to the batch's largest id."""
    g = torch.Generator().manual_seed(seed)
    hit = _token_positions(x, severity, g)
    random_ids = torch.randint(1, max(2, int(x.max()) + 1), x.shape, generator=g, dtype=x.dtype)
    return torch.where(hit, random_ids, x)


def token_dropout(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Missing words: chosen tokens become padding (id 0)."""
    g = torch.Generator().manual_seed(seed)
    return x.masked_fill(_token_positions(x, severity, g), 0)


TOKEN_CORRUPTIONS = {"token_substitution": token_substitution, "token_dropout": token_dropout}


def for_inputs(x: torch.Tensor) -> tuple[str, ...]:
    """The corruptions that suit `x`: token ones for integer ids, image ones otherwise."""
    return tuple(CORRUPTIONS if x.is_floating_point() else TOKEN_CORRUPTIONS)


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption `name` at `severity` (1..5), seeded: image corruptions to float images,
    token corruptions (`TOKEN_CORRUPTIONS`) to integer token ids, which keep their dtype.

    >>> x = torch.full((2, 1, 8, 8), 0.5)
    >>> corrupt(x, "brightness", 5).max().item()
    1.0
    >>> torch.equal(corrupt(x, "gaussian_noise", 3, seed=1), corrupt(x, "gaussian_noise", 3, seed=1))
    True
    >>> ids = torch.arange(1, 101).view(4, 25)
    >>> d = corrupt(ids, "token_dropout", 5)
    >>> d.dtype, 0 < int((d == 0).sum()) < 100
    (torch.int64, True)
    """
    if severity not in (1, 2, 3, 4, 5):
        raise InputError(f"severity={severity}: expected an integer 1..5")
    if x.is_floating_point() or name in CORRUPTIONS:
        if name not in CORRUPTIONS:
            raise suggest(name, CORRUPTIONS, "image corruption")
        if not x.is_floating_point():
            raise InputError(f"corruption {name!r} changes pixels; integer token ids take "
                             f"{', '.join(TOKEN_CORRUPTIONS)}")
        return CORRUPTIONS[name](x.float(), severity, seed)
    if name not in TOKEN_CORRUPTIONS:
        raise suggest(name, TOKEN_CORRUPTIONS, "token corruption")
    return TOKEN_CORRUPTIONS[name](x, severity, seed)
