"""LPIPS (Zhang et al., CVPR 2018): AlexNet backbone, linear heads v0.1, inputs scaled to [-1, 1].

The ``lpips`` package provides the network; its two weight files are resolved and sha256-checked by the
weights manager (the torchvision AlexNet, the package's bundled ``weights/v0.1/alex.pth`` heads) and
loaded strictly with ``weights_only=True``, so no download and no unchecked file is involved.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs


class LPIPS:
    def __init__(self, device: str = "cpu", backbone_path: str | None = None,
                 heads_path: str | None = None) -> None:
        import lpips

        from ..assets.safeload import loading_into
        from ..assets.weights import load_state_dict

        net = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)
        backbone, self.backbone = load_state_dict("alexnet", backbone_path)
        features = {k[len("features."):]: v for k, v in backbone.items() if k.startswith("features.")}
        mapped = {}
        with loading_into("alexnet", self.backbone.path, "torchvision's AlexNet features"):
            for key in net.net.state_dict():
                _slice, idx, param = key.split(".")
                mapped[key] = features[f"{idx}.{param}"]
            net.net.load_state_dict(mapped, strict=True)
        heads, self.heads = load_state_dict("lpips-alex-v0.1", heads_path)
        with loading_into("lpips-alex-v0.1", self.heads.path, "LPIPS' linear heads"):
            missing, unexpected = net.load_state_dict(heads, strict=False)
        # ``lins`` is a ModuleList aliasing lin0..lin4, so only the lin<k> keys must come from the file
        lost = [k for k in missing if k.startswith("lin") and not k.startswith("lins.")]
        if unexpected or lost:
            raise ValueError(f"LPIPS heads file {self.heads.path} has unexpected keys {unexpected} "
                             f"or misses {lost}")
        self.net = net.eval().to(device)
        self.device = device

    def score_pairs(self, sr: Sequence[np.ndarray], hr: Sequence[np.ndarray]) -> list[float]:
        import torch

        def t(images: Sequence[np.ndarray]) -> torch.Tensor:
            import torch

            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(self.device)
            return x / 127.5 - 1.0

        with torch.inference_mode():
            d = self.net(t(sr), t(hr))
        return [float(v) for v in d.reshape(-1).cpu()]


METRICS.register("lpips", MetricSpec(
    name="lpips", factory=lambda device="cpu": LPIPS(device), higher_is_better=False, version="1",
    summary="LPIPS v0.1, AlexNet, SR vs HR", needs_hr=True, backend="alexnet",
    convention="lpips 0.1 AlexNet, RGB in [-1, 1], spatial mean",
    availability=needs(modules=(("lpips", "pip install lpips"),), weights=("alexnet", "lpips-alex-v0.1"))))
