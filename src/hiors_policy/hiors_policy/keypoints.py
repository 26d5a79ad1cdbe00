"""Keypoint vision tower: conv stack (GroupNorm) + spatial softmax, one token per keypoint.

The published recipe for visuomotor policies from tens of demonstrations (robomimic, Diffusion
Policy): a small conv encoder whose feature maps are turned into expected image coordinates by a
spatial softmax. A coordinate is what a policy with absolute targets needs ("the peg is here"),
at sub-cell precision, and it trains in a few thousand steps where ViT patch tokens from scratch
do not. Output tokens replace the SigLIP tokens in the pi0 prefix, so the rest of the VLA is
unchanged.
"""
from __future__ import annotations

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


class KeypointEncoder(nn.Module):
    """(N, 3, S, S) images in [-1, 1] -> (N, K + 1, out_width) tokens: K keypoint tokens
    (a per-keypoint affine map of its (x, y)) and one token of the pooled features (appearance:
    e.g. whether the fingers hold something)."""

    def __init__(self, config: PolicyConfig, out_width: int):
        super().__init__()
        ch, k = config.vision_width, config.vision_keypoints
        self.convs = nn.Sequential(_block(3, ch, 5, 2), _block(ch, ch, 3, 1),
                                   _block(ch, 2 * ch, 3, 2), _block(2 * ch, 2 * ch, 3, 1))
        self.to_maps = nn.Conv2d(2 * ch, k, 1)
        self.softmax = SpatialSoftmax()
        self.kp_weight = nn.Parameter(torch.randn(k, 2, out_width) * 0.5)
        self.kp_bias = nn.Parameter(torch.randn(k, out_width) * 0.02)
        self.pool_proj = nn.Linear(2 * ch, out_width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.convs(images)
        kp = self.softmax(self.to_maps(feats))                              # (N, K, 2)
        kp_tokens = torch.einsum('nkc,kcw->nkw', kp.to(self.kp_weight.dtype), self.kp_weight) + self.kp_bias
        pooled = self.pool_proj(F.adaptive_avg_pool2d(feats, 1).flatten(1))[:, None, :]
        return torch.cat([kp_tokens, pooled.to(kp_tokens.dtype)], dim=1)


__all__ = ['KeypointEncoder', 'SpatialSoftmax']
