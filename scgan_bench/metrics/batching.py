"""Per-image scores from a network that takes a batch of RGB images in [0, 1] (N x 3 x H x W) and returns
one value per image: images of one size go through it together, in chunks."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def scores_by_size(net: Any, images: Sequence[np.ndarray], device: str, batch: int) -> list[float]:
    """``net``'s value for each uint8 H x W x 3 image, in the images' order."""
    import torch

    out = [float("nan")] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, im in enumerate(images):
        groups.setdefault(im.shape, []).append(k)
    for idx in groups.values():
        for s in range(0, len(idx), batch):
            part = idx[s:s + batch]
            x = torch.from_numpy(np.stack([images[k] for k in part])).permute(0, 3, 1, 2).float() / 255.0
            with torch.inference_mode():
                q = net(x.to(device)).double().cpu().numpy()
            for k, v in zip(part, q):
                out[k] = float(v)
    return out
