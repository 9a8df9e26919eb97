"""Files a run loads: weights (URL + sha256 + cache + local override, ``weights``), the inert checks of every
weight and state file (``safeload``, ``statefiles``), TorchScript and ImageNet backbones, and the optional
packages a method or metric needs (``requirements``). ``scgan_bench.weights`` is the public entry."""
