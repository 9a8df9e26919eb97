"""DFDNet's generator (csxmli2016/DFDNet ``UNetDictFace(64)``), written here in the official key layout.

* ``VggExtract``: torchvision VGG19 (its weights come from the checkpoint), input (x + 1) / 2 normalised
  with the stored ``RGB_mean`` / ``RGB_std``; features after layers 7, 16, 25 and 34 (256, 128, 64, 32 px at
  512 px input; 128, 256, 512, 512 channels). As in the official class, the four slices reference the same
  modules as ``model.features``, so the state dict lists those tensors under both names.
* Per scale and facial part (left eye, right eye, nose, mouth): the part's feature crop (its box divided by
  512 / size) is resized bilinearly to the dictionary's size; every dictionary atom is AdaIN-normalised
  to the crop's statistics (per channel, unbiased variance + 1e-5); the atom with the highest correlation
  (a convolution of the crop with the atoms) is resized back (nearest) to the crop; an attention block
  (two spectral-norm convs) of ``atom - crop`` weights the atom, which is added to the crop in place.
* ``MSDilate`` (dilations 4, 3, 2, 1) on the 32 px VGG features, then four SFT up-blocks (``up0..up3``:
  blur, conv, leaky ReLU twice, ``x * scale(f) + shift(f)`` from the updated features, bilinear x2, conv)
  and ``up4`` (spectral-norm conv, two residual blocks of plain convs, plain conv, tanh). ``to_rgb0..3``
  are in the checkpoint, unused. 386 state-dict entries, the four up-blocks' blur buffers included.

Spectral-norm convolutions use the stored ``weight_u`` / ``weight_v`` (eval semantics: the official test
never calls ``eval()``, so it performs one power iteration per call; negligible, stated in the card).
One image at a time (the official forward hard-codes batch item 0).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .dfdnet_layout import FEATURE_SIZES, PARTS  # the layout of the released dictionaries
from .hifacegan_arch import SNConv2d

PREFIX = {"left_eye": "le", "right_eye": "re", "nose": "no", "mouth": "mo"}
PART_SIZES = (80, 80, 50, 110)           # at 512 px
CHANNELS = (128, 256, 512, 512)
VGG_SPLITS = (0, 8, 17, 26, 35)


class DilatedSNConv(SNConv2d):
    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__(cin, cout, 3, padding=dilation)
        self.dil = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding, dilation=self.dil)


def conv_u(c: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(DilatedSNConv(c, c, dilation), nn.LeakyReLU(0.2), DilatedSNConv(c, c, dilation))


def attention_block(c: int) -> nn.Sequential:
    return nn.Sequential(SNConv2d(c, c, 3, 1), nn.LeakyReLU(0.2), SNConv2d(c, c, 3, 1))


class MSDilateBlock(nn.Module):
    def __init__(self, c: int, dilation: Sequence[int] = (4, 3, 2, 1)) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.conv4 = (conv_u(c, d) for d in dilation)
        self.convi = SNConv2d(4 * c, c, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([self.conv1(x), self.conv2(x), self.conv3(x), self.conv4(x)], 1)
        return self.convi(cat) + x


class Blur(nn.Module):
    """[1 2 1]^T [1 2 1] / 16 depthwise, padding 1 (the checkpoint stores the kernel and its flip)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        w = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 16
        self.register_buffer("weight", w.repeat(c, 1, 1, 1))
        self.register_buffer("weight_flip", torch.flip(w, [2, 3]).repeat(c, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class Bilinear2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class StyledUpBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(Blur(cin), SNConv2d(cin, cout, 3, 1), nn.LeakyReLU(0.2))
        self.convup = nn.Sequential(Bilinear2x(), SNConv2d(cout, cout, 3, 1), nn.LeakyReLU(0.2))
        self.ScaleModel1 = nn.Sequential(SNConv2d(cin, cout, 3, 1), nn.LeakyReLU(0.2), SNConv2d(cout, cout, 3, 1))
        self.ShiftModel1 = nn.Sequential(SNConv2d(cin, cout, 3, 1), nn.LeakyReLU(0.2), SNConv2d(cout, cout, 3, 1),
                                         nn.Sigmoid())

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        return self.convup(out * self.ScaleModel1(style) + self.ShiftModel1(style))


class UpResBlock(nn.Module):
    """``up4``'s residual block: two plain convolutions (the official ``UpResBlock`` has its spectral
    norm commented out), so the checkpoint stores ``Model.{0,2}.{weight,bias}``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.Model = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.Model(x)


def to_rgb(c: int) -> nn.Sequential:
    return nn.Sequential(SNConv2d(c, c, 3, 1), nn.LeakyReLU(0.2), SNConv2d(c, 3, 3, 1))


VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class _VGG19(nn.Module):
    """torchvision's VGG19 layout (``features.N``, ``classifier.{0,3,6}``) at a channel ``width``; the
    classifier (unused here, but in the official checkpoint) exists only at full width."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = max(1, int(v * width))
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True)]
                cin = c
        self.features = nn.Sequential(*layers)
        if width == 1.0:
            self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))


class VGGFeat(nn.Module):
    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.model = _VGG19(width)
        self.features = nn.ModuleList()
        for a, b in zip(VGG_SPLITS[:-1], VGG_SPLITS[1:]):   # slices sharing model.features' modules
            part = nn.Sequential()
            for j in range(a, b):
                part.add_module(str(j), self.model.features[j])
            self.features.append(part)
        self.RGB_mean = nn.Parameter(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.RGB_std = nn.Parameter(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.RGB_mean) / self.RGB_std
        if x.shape[3] < 224:
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        out = []
        for m in self.features:
            x = m(x)
            out.append(x)
        return out


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``adaptive_instance_normalization_4D``: content's per-(item, channel) statistics replaced by
    style's (unbiased variance + eps)."""
    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c = t.shape[:2]
        flat = t.reshape(n, c, -1)
        return flat.mean(2).view(n, c, 1, 1), (flat.var(2) + eps).sqrt().view(n, c, 1, 1)

    sm, ss = stats(style)
    cm, cs = stats(content)
    return (content - cm) / cs * ss + sm


Boxes = Mapping[str, Sequence[int]]  # part -> (x1, y1, x2, y2) at 512 px


class UNetDictFace(nn.Module):
    """``forward(x, boxes)``: one 512 px RGB image in [-1, 1] and its four part boxes -> [-1, 1] (tanh).
    ``width`` scales every channel count (1 = the released ``UNetDictFace(64)``; tests use less)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.width = width
        ngf = int(64 * width)
        for p in PARTS:
            for f, c in zip(FEATURE_SIZES, CHANNELS):
                setattr(self, f"{PREFIX[p]}_{f}", attention_block(int(c * width)))
        self.VggExtract = VGGFeat(width)
        self.MSDilate = MSDilateBlock(ngf * 8)
        self.up0, self.up1 = StyledUpBlock(ngf * 8, ngf * 8), StyledUpBlock(ngf * 8, ngf * 4)
        self.up2, self.up3 = StyledUpBlock(ngf * 4, ngf * 2), StyledUpBlock(ngf * 2, ngf)
        self.up4 = nn.Sequential(SNConv2d(ngf, ngf, 3, 1), nn.LeakyReLU(0.2), UpResBlock(ngf), UpResBlock(ngf),
                                 nn.Conv2d(ngf, 3, 3, 1, 1), nn.Tanh())
        self.to_rgb0, self.to_rgb1 = to_rgb(ngf * 8), to_rgb(ngf * 4)
        self.to_rgb2, self.to_rgb3 = to_rgb(ngf * 2), to_rgb(ngf)
        self.dictionaries: dict[int, dict[str, torch.Tensor]] = {}

    def set_dictionaries(self, dicts: Mapping[int, Mapping[str, torch.Tensor]]) -> "UNetDictFace":
        """``{feature size: {part: (K, C, h, w) atoms}}`` (the 16 DictionaryCenter512 files, reshaped)."""
        self.dictionaries = {int(f): dict(d) for f, d in dicts.items()}
        return self

    def update(self, feature: torch.Tensor, f: int, boxes: Boxes) -> torch.Tensor:
        updated = feature.clone()
        scale = 512 / f
        for part in PARTS:
            atoms = self.dictionaries[f][part].to(feature)
            x1, y1, x2, y2 = (int(v // scale) for v in boxes[part])
            crop = feature[:, :, y1:y2, x1:x2].clone()
            small = F.interpolate(crop, atoms.shape[2:], mode="bilinear", align_corners=False)
            normed = adain(atoms, small)
            index = int(torch.argmax(F.softmax(F.conv2d(small, normed).view(-1), dim=0)))
            swap = F.interpolate(normed[index:index + 1], crop.shape[2:], mode="nearest")
            attention = getattr(self, f"{PREFIX[part]}_{f}")(swap - crop)
            updated[:, :, y1:y2, x1:x2] = attention * swap + crop
        return updated

    def forward(self, x: torch.Tensor, boxes: Boxes) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError("DFDNet runs one image at a time (its part boxes are per image)")
        feats = self.VggExtract(x)
        upd = [self.update(feat, f, boxes) for feat, f in zip(feats, FEATURE_SIZES)]
        h = self.up0(self.MSDilate(feats[3]), upd[3])
        h = self.up3(self.up2(self.up1(h, upd[2]), upd[1]), upd[0])
        return self.up4(h)


def dictionary_shape(part: str, f: int, k: int, width: float = 1.0) -> tuple[int, int, int, int]:
    """(K, C, s, s) of one dictionary file: the part's size at 512 px divided by 512 / f."""
    s = PART_SIZES[PARTS.index(part)] // (512 // f)
    return (k, int(CHANNELS[FEATURE_SIZES.index(f)] * width), s, s)


def width_from_state_dict(sd: Mapping[str, torch.Tensor]) -> float:
    return sd["VggExtract.model.features.0.weight"].shape[0] / 64
