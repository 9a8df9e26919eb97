"""RetinaFace (Deng et al., CVPR 2020) in the layout of the widely used biubug6/Pytorch_Retinaface
weights (``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``; keys optionally prefixed ``module.``),
written for this project so the official state dicts load strictly, with ``weights_only=True``.

Inference follows the reference: BGR input minus (104, 117, 123), prior boxes with min sizes
(16, 32) / (64, 128) / (256, 512) at strides 8 / 16 / 32, variances (0.1, 0.2), NMS 0.4.
"""
from __future__ import annotations

from itertools import product
from math import ceil

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CONFIGS = {
    "mobilenet0.25": {"in_channel": 32, "out_channel": 64},
    "resnet50": {"in_channel": 256, "out_channel": 256},
}
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)


def _cbr(inp: int, oup: int, stride: int = 1, leaky: float = 0.0, k: int = 3, relu: bool = True
         ) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, k, stride, k // 2, bias=False), nn.BatchNorm2d(oup)]
    if relu:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def _dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True))


class MobileNetV1Body(nn.Module):
    """The 0.25-width MobileNetV1 trunk; returns stage1..3 outputs (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(_cbr(3, 8, 2, leaky=0.1), _dw(8, 16, 1), _dw(16, 32, 2),
                                    _dw(32, 32, 1), _dw(32, 64, 2), _dw(64, 64, 1))
        self.stage2 = nn.Sequential(_dw(64, 128, 2), *[_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_dw(128, 256, 2), _dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.stage1(x)
        b = self.stage2(a)
        return [a, b, self.stage3(b)]


class ResNet50Body(nn.Module):
    """torchvision's ResNet-50 trunk (keys conv1, bn1, layer1..4); returns layer2..4 outputs."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        r = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        a = self.layer2(x)
        b = self.layer3(a)
        return [a, b, self.layer4(b)]


class FPN(nn.Module):
    def __init__(self, in_list: list[int], out: int) -> None:
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0
        self.output1 = _cbr(in_list[0], out, leaky=leaky, k=1)
        self.output2 = _cbr(in_list[1], out, leaky=leaky, k=1)
        self.output3 = _cbr(in_list[2], out, leaky=leaky, k=1)
        self.merge1 = _cbr(out, out, leaky=leaky)
        self.merge2 = _cbr(out, out, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    def __init__(self, inp: int, out: int) -> None:
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0
        self.conv3X3 = _cbr(inp, out // 2, relu=False)
        self.conv5X5_1 = _cbr(inp, out // 4, leaky=leaky)
        self.conv5X5_2 = _cbr(out // 4, out // 4, relu=False)
        self.conv7X7_2 = _cbr(out // 4, out // 4, leaky=leaky)
        self.conv7x7_3 = _cbr(out // 4, out // 4, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5 = self.conv5X5_1(x)
        c7 = self.conv7X7_2(c5)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5), self.conv7x7_3(c7)], dim=1))


class _Head(nn.Module):
    def __init__(self, inp: int, per_anchor: int, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(inp, anchors * per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    """Returns (boxes, class scores, landmarks) per prior, like the reference in test phase."""

    def __init__(self, backbone: str = "mobilenet0.25") -> None:
        super().__init__()
        cfg = CONFIGS[backbone]
        self.body = MobileNetV1Body() if backbone == "mobilenet0.25" else ResNet50Body()
        c, out = cfg["in_channel"], cfg["out_channel"]
        self.fpn = FPN([c * 2, c * 4, c * 8], out)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out, out), SSH(out, out), SSH(out, out)
        self.ClassHead = nn.ModuleList([_Head(out, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(out, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(out, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.fpn(self.body(x))
        feats = [self.ssh1(f[0]), self.ssh2(f[1]), self.ssh3(f[2])]
        loc = torch.cat([h(v) for h, v in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(v) for h, v in zip(self.ClassHead, feats)], dim=1)
        ldm = torch.cat([h(v) for h, v in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(conf, dim=-1), ldm


def priors(h: int, w: int) -> torch.Tensor:
    """Prior boxes (cx, cy, w, h), normalised, in the reference's order."""
    out = []
    for k, step in enumerate(STEPS):
        fh, fw = ceil(h / step), ceil(w / step)
        for i, j in product(range(fh), range(fw)):
            for m in MIN_SIZES[k]:
                out.append([(j + 0.5) * step / w, (i + 0.5) * step / h, m / w, m / h])
    return torch.tensor(out, dtype=torch.float32)


def detect(net: RetinaFace, rgb: np.ndarray, *, conf_threshold: float = 0.5, nms: float = 0.4
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces in one RGB uint8 image: boxes (K, 4) xyxy px, scores (K,), landmarks (K, 5, 2) px,
    best first."""
    from torchvision.ops import nms as tv_nms

    h, w = rgb.shape[:2]
    dev = next(net.parameters()).device
    x = torch.from_numpy(rgb[..., ::-1].astype(np.float32) - np.array(BGR_MEAN, np.float32))
    x = x.permute(2, 0, 1).unsqueeze(0).to(dev)
    with torch.inference_mode():
        loc, conf, ldm = net(x)
    p = priors(h, w).to(dev)
    v0, v1 = VARIANCES
    centers = p[:, :2] + loc[0, :, :2] * v0 * p[:, 2:]
    sizes = p[:, 2:] * torch.exp(loc[0, :, 2:] * v1)
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)
    lms = torch.stack([p[:, :2] + ldm[0, :, 2 * k:2 * k + 2] * v0 * p[:, 2:] for k in range(5)], dim=1)
    scale = torch.tensor([w, h], dtype=torch.float32, device=dev)
    boxes = boxes * scale.repeat(2)
    lms = lms * scale
    scores = conf[0, :, 1]
    keep = scores > conf_threshold
    boxes, lms, scores = boxes[keep], lms[keep], scores[keep]
    order = tv_nms(boxes, scores, nms)
    return (boxes[order].cpu().numpy(), scores[order].cpu().numpy(), lms[order].cpu().numpy())


def best_landmarks(net: RetinaFace, rgbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The top-scoring face of each image in one forward pass: ``rgbs`` is N x H x W x 3 uint8 (one size),
    or an N x 3 x H x W uint8 RGB tensor on any device (converted to BGR minus the means on the
    network's device); returns scores (N,) and landmarks (N, 5, 2) px. The same face as :func:`detect`'s
    first (NMS always keeps the highest score and puts it first), without its per-image passes."""
    dev = next(net.parameters()).device
    if isinstance(rgbs, np.ndarray):
        rgbs = torch.from_numpy(np.ascontiguousarray(rgbs)).permute(0, 3, 1, 2)
    n, _, h, w = rgbs.shape
    x = rgbs.to(dev).flip(1).float() - torch.tensor(BGR_MEAN, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    with torch.inference_mode():
        _, conf, ldm = net(x)
    scores, best = conf[:, :, 1].max(dim=1)
    p = priors(h, w).to(dev)[best]  # N x 4
    v0 = VARIANCES[0]
    d = ldm[torch.arange(n, device=dev), best].view(n, 5, 2)
    lms = (p[:, None, :2] + d * v0 * p[:, None, 2:]) * torch.tensor([w, h], dtype=torch.float32, device=dev)
    return scores.cpu().numpy(), lms.cpu().numpy()
