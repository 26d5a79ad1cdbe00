"""Synthetic observations / batches (deterministic from a seed) for tests, benches and smoke runs."""
from __future__ import annotations

import numpy as np
import torch

from hiors_common.contracts import DEFAULT_PROMPT

from .config import PolicyConfig


def random_observation(config: PolicyConfig, seed: int = 0, image_hw: tuple[int, int] | None = None):
    """(images dict name -> (H, W, 3) uint8, state (state_dim,), prompt)."""
    rng = np.random.default_rng(seed)
    h, w = image_hw or (config.image_size, config.image_size)
    images = {n: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for n in config.camera_names}
    state = rng.normal(size=config.state_dim)
    return images, state, DEFAULT_PROMPT


def random_samples(config: PolicyConfig, n: int, seed: int = 0, image_hw=None) -> list[dict]:
    """Training samples in PolicyProcessor.prepare_batch's list format."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        images, state, prompt = random_observation(config, seed * 1000 + i, image_hw)
        out.append({'images': images, 'state': state, 'prompt': prompt,
                    'action': rng.normal(size=(config.chunk_size, config.action_dim))})
    return out


def random_batch(config: PolicyConfig, batch_size: int = 2, seed: int = 0, with_action: bool = True,
                 lang_len: int = 10) -> dict[str, torch.Tensor]:
    """A model batch directly as tensors (already 'normalised'), bypassing the processor."""
    g = torch.Generator().manual_seed(seed)
    B, c = batch_size, config
    n_cam = len(c.camera_names)
    lang_len = min(lang_len, c.tokenizer_max_length)
    lang_masks = torch.zeros(B, c.tokenizer_max_length, dtype=torch.bool)
    lang_masks[:, :lang_len] = True
    tokens = torch.randint(4, min(c.vocab_size, 260), (B, c.tokenizer_max_length), generator=g)
    tokens[~lang_masks] = 0
    state = torch.zeros(B, c.max_state_dim)
    state[:, :c.state_dim] = torch.randn(B, c.state_dim, generator=g)
    b = {
        'images': torch.rand(B, n_cam, 3, c.image_size, c.image_size, generator=g) * 2 - 1,
        'image_masks': torch.ones(B, n_cam, dtype=torch.bool),
        'lang_tokens': tokens,
        'lang_masks': lang_masks,
        'state': state,
    }
    if with_action:
        a = torch.zeros(B, c.chunk_size, c.max_action_dim)
        a[:, :, :c.action_dim] = torch.randn(B, c.chunk_size, c.action_dim, generator=g)
        dm = torch.zeros(B, c.max_action_dim, dtype=torch.bool)
        dm[:, :c.action_dim] = True
        b.update(action=a, action_mask=torch.ones(B, c.chunk_size, dtype=torch.bool), action_dim_mask=dm)
    return b
