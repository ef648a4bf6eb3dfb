"""The pretrained networks of FID and LPIPS, built from the libraries and loaded from the registry.

* FID: pytorch-fid's InceptionV3 (the TF 2015-12-05 graph ported), 2048-d pool features.
  pytorch-fid fetches its weights inside its constructor with ``load_state_dict_from_url``;
  that one call is pointed at the verified local file, loaded with ``weights_only=True``, so
  the network is pytorch-fid's own and nothing is downloaded.
* LPIPS v0.1 on AlexNet: lpips ships the linear heads; the AlexNet trunk comes from torchvision's
  ``alexnet-owt-7be5be79.pth``, mapped onto lpips' five slices.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from facesketch.errors import WeightsError
from facesketch.maps.weights import require
from facesketch.torchio import safe_load

# torchvision AlexNet feature index -> lpips slice
_ALEX_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def _torch_load(path: Path):
    return safe_load(path, WeightsError, "PyTorch state dict")


def inception_from_state(state: dict, path: Path | str = "state dict"):
    import pytorch_fid.inception as inception

    def local(*args, **kwargs):
        return state

    try:
        with mock.patch.object(inception, "load_state_dict_from_url", local):
            model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except RuntimeError as e:
        raise WeightsError(f"{path}: not pytorch-fid's Inception weights ({str(e).splitlines()[0]})") from e
    return model.eval()


def load_fid_inception(weights_dir: Path):
    path = require("fid_inception", weights_dir)
    return inception_from_state(_torch_load(path), path)


def lpips_from_alexnet_state(state: dict, path: Path | str = "state dict"):
    import lpips

    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    trunk = {}
    for idx, s in _ALEX_SLICES.items():
        for p in ("weight", "bias"):
            key = f"features.{idx}.{p}"
            if key not in state:
                raise WeightsError(f"{path}: not torchvision's AlexNet weights: missing {key}")
            trunk[f"slice{s}.{idx}.{p}"] = state[key]
    try:
        model.net.load_state_dict(trunk)
    except RuntimeError as e:
        raise WeightsError(f"{path}: AlexNet shapes do not match ({str(e).splitlines()[0]})") from e
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_lpips(weights_dir: Path):
    path = require("lpips_alexnet", weights_dir)
    return lpips_from_alexnet_state(_torch_load(path), path)
