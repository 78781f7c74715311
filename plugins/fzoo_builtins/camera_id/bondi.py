"""The patch CNN of Bondi et al. 2017, with the optional constrained first layer of Bayar & Stamm.

Bondi, Baroffio, Güera, Bestagini, Delp & Tubaro 2017, "First steps toward camera model
identification with convolutional neural networks", IEEE Signal Processing Letters 24(3):
64 x 64 RGB patches through

    conv 4x4x32 -> max-pool 2 -> conv 5x5x48 -> max-pool 2 -> conv 5x5x64 -> max-pool 2
    -> conv 5x5x128 -> FC 128 -> ReLU -> FC n_classes (softmax)

all convolutions with stride 1 and no padding. The pools round *up* (Caffe's pooling, which the
paper used: ``ceil_mode=True`` here), so a 64 px patch shrinks 61 -> 31 -> 27 -> 14 -> 10 -> 5
-> 1 and the last convolution yields exactly one 128-d vector, as in the paper.

Bayar & Stamm 2016, "A deep learning approach to universal image manipulation detection using a
new convolutional layer" (ACM IH&MMSec), and 2018, "Constrained convolutional neural networks:
a new approach towards general purpose image manipulation detection" (IEEE TIFS): a first
convolution whose 5 x 5 kernels are forced to be prediction-error filters, ``w(centre) = -1``
and the other 24 weights summing to 1, re-imposed after every optimiser step, so the network
learns from residuals rather than from scene content (Bayar & Stamm 2017 used it for camera-model
identification too). Here the constraint holds for every (output, input) channel pair.

Deviations, all optional and documented in :class:`BondiNet`: the constrained layer (when on) is
an extra 5 x 5 layer in front of Bondi's first convolution (the patch then shrinks
60 -> 57 -> 29 -> 25 -> 13 -> 9 -> 5 -> 1); ``batch_norm`` adds batch normalisation after each
convolution (faster, steadier training on a CPU budget); patches larger than 64 px end in a
global average over the last map (the paper's FC sees one 1 x 1 x 128 vector).
"""

from __future__ import annotations

import torch
from torch import nn

#: side of the patches the paper's network is built for
PATCH = 64
#: width of the embedding (the paper's FC 128)
EMBED_DIM = 128
#: kernel size of the constrained layer (Bayar & Stamm)
CONSTRAINED_KERNEL = 5


class ConstrainedConv2d(nn.Conv2d):
    """Bayar & Stamm's constrained convolution: every 2-D kernel a prediction-error filter.

    :meth:`project` enforces ``w[o, i, c, c] = -1`` and ``sum(w[o, i]) - w[o, i, c, c] = 1``
    for every output ``o`` and input ``i`` channel. Bayar & Stamm divide the off-centre weights
    by their sum; this uses the orthogonal (Euclidean) projection onto the same constraint set,
    ``w_off += (1 - sum(w_off)) / 24``, which never divides by a sum near zero. Initialisation is
    theirs: uniform random weights, off-centre ones normalised to sum 1, centre -1. No bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        if kernel_size % 2 != 1:
            raise ValueError("the constrained kernel needs a centre: odd kernel_size")
        super().__init__(in_channels, out_channels, kernel_size, bias=False)
        with torch.no_grad():
            w = torch.rand_like(self.weight)
            c = kernel_size // 2
            w[:, :, c, c] = 0.0
            w /= w.sum(dim=(2, 3), keepdim=True)
            w[:, :, c, c] = -1.0
            self.weight.copy_(w)

    @torch.no_grad()
    def project(self) -> None:
        """Re-impose the constraint (call after every optimiser step)."""
        w = self.weight
        k = w.shape[-1]
        c = k // 2
        mask = torch.ones(k, k, dtype=torch.bool, device=w.device)
        mask[c, c] = False
        off_sum = (w * mask).sum(dim=(2, 3), keepdim=True)
        w += mask * (1.0 - off_sum) / (k * k - 1)
        w[:, :, c, c] = -1.0

    @torch.no_grad()
    def violation(self) -> float:
        """Largest deviation from the constraint (0 after :meth:`project`)."""
        w = self.weight
        c = w.shape[-1] // 2
        centre = w[:, :, c, c]
        off = w.sum(dim=(2, 3)) - centre
        return float(torch.maximum((centre + 1).abs().max(), (off - 1).abs().max()))


class BondiNet(nn.Module):
    """Bondi et al. 2017's camera-model CNN (module docstring), optionally Bayar-constrained.

    ``forward(x)`` returns ``(logits [N, n_classes], embedding [N, 128])``; the embedding is the
    FC-128 output after its ReLU (the features the paper also fed to an SVM). Input: ``[N, 3, P,
    P]`` float, ``P >= 64``; centre it before (the extractor subtracts 0.5).

    ``constrained``: a Bayar-Stamm layer of ``constrained_filters`` 5 x 5 kernels in front.
    ``batch_norm``: batch normalisation after each convolution (not in the paper).
    """

    def __init__(
        self,
        n_classes: int,
        constrained: bool = False,
        constrained_filters: int = 3,
        batch_norm: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError("n_classes must be >= 1")
        layers: list[nn.Module] = []
        channels = in_channels
        if constrained:
            layers.append(ConstrainedConv2d(channels, constrained_filters, CONSTRAINED_KERNEL))
            channels = constrained_filters
        for k, (width, kernel) in enumerate(((32, 4), (48, 5), (64, 5), (128, 5))):
            layers.append(nn.Conv2d(channels, width, kernel))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            if k < 3:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            channels = width
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels, EMBED_DIM)
        self.fc2 = nn.Linear(EMBED_DIM, n_classes)

    @property
    def constrained(self) -> ConstrainedConv2d | None:
        """The Bayar-Stamm layer (the first of ``features``), or None."""
        first = self.features[0]
        return first if isinstance(first, ConstrainedConv2d) else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        h = h.mean(dim=(2, 3)) if h.shape[-1] * h.shape[-2] > 1 else h.flatten(1)
        emb = torch.relu(self.fc1(h))
        return self.fc2(emb), emb

    def project(self) -> None:
        """Re-impose the constrained layer's constraint (no-op without one)."""
        layer = self.constrained
        if layer is not None:
            layer.project()
