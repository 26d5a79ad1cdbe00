"""Observation / action processing shared by training and inference (the ONE place).

Raw robot data -> model batch:
  images: dict camera -> (H, W, 3) uint8 RGB, resized (aspect kept, padded) to image_size and
          scaled to [-1, 1] (SigLIP convention), channels first; missing cameras are -1 images
          with image_masks False.
  state:  (state_dim,) -> z-scored with NormStats -> zero-padded to max_state_dim.
  action: (H, action_dim) chunk -> z-scored -> zero-padded to max_action_dim, with a step mask
          (chunk steps past the episode end) and a dim mask (padded dims).
  action_space 'tool' (hiors_policy.action_space): an observation's joints become the tool pose
          here; training samples arrive already encoded (the trainer encodes each episode once);
          `joint_targets` turns a predicted chunk back into joint targets.
  prompt: str -> token ids + mask (tokenizer.tokenize_prompt).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from .action_space import ROBOT_DIM, make_space
from .config import PolicyConfig, loads_json
from .tokenizer import make_tokenizer, tokenize_prompt

MIN_STD = 1e-4   # floor so a joint that never moved in the data does not blow up


@dataclass
class NormStats:
    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    def __post_init__(self):
        for k in ('state_mean', 'state_std', 'action_mean', 'action_std'):
            v = np.asarray(getattr(self, k), dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(v)):
                raise ValueError(f'NormStats.{k} has non-finite values')
            setattr(self, k, v)
        if self.state_mean.shape != self.state_std.shape or self.action_mean.shape != self.action_std.shape:
            raise ValueError('NormStats mean/std lengths differ')
        if np.any(self.state_std <= 0) or np.any(self.action_std <= 0):
            raise ValueError('NormStats std must be > 0')

    @classmethod
    def identity(cls, state_dim: int = 7, action_dim: int = 7) -> 'NormStats':
        return cls(np.zeros(state_dim), np.ones(state_dim), np.zeros(action_dim), np.ones(action_dim))

    @classmethod
    def from_arrays(cls, states: np.ndarray, actions: np.ndarray, min_std: float = MIN_STD) -> 'NormStats':
        """states (N, Ds), actions (N, Da) (any leading shape; last axis = dim)."""
        s = np.asarray(states, dtype=np.float64)
        a = np.asarray(actions, dtype=np.float64)
        s = s.reshape(-1, s.shape[-1])
        a = a.reshape(-1, a.shape[-1])
        if s.shape[0] == 0 or a.shape[0] == 0:
            raise ValueError('NormStats.from_arrays needs at least one state and one action')
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(a))):
            raise ValueError('NormStats.from_arrays: data has NaN/inf')
        return cls(s.mean(0), np.maximum(s.std(0), min_std), a.mean(0), np.maximum(a.std(0), min_std))

    def to_dict(self) -> dict[str, Any]:
        return {k: [float(x) for x in getattr(self, k)]
                for k in ('state_mean', 'state_std', 'action_mean', 'action_std')}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> 'NormStats':
        keys = {'state_mean', 'state_std', 'action_mean', 'action_std'}
        if not isinstance(d, dict) or set(d) != keys:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f'norm_stats must have exactly the keys {sorted(keys)}, got {got}')
        return cls(**{k: np.asarray(d[k], dtype=np.float64) for k in keys})

    @classmethod
    def from_json(cls, s: str) -> 'NormStats':
        return cls.from_dict(loads_json(s, 'norm_stats'))

    def __eq__(self, other):
        return isinstance(other, NormStats) and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ('state_mean', 'state_std', 'action_mean', 'action_std'))


def resize_with_pad(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, aspect kept, black padding (pi0/openpi style)."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    r = cv2.resize(img, (nw, nh), interpolation=interp)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = r
    return out


def random_shift(images: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """Random-shift augmentation (DrQ / Diffusion Policy's random crop): each image of a
    (B, n_cam, 3, S, S) batch is edge-padded by `pad` pixels and cropped back to S x S at an
    offset drawn from `rng` (independently per sample and camera). Training only: it keeps a
    few demonstrations from being memorised pixel for pixel."""
    if pad <= 0:
        return images
    B, N, C, S, _ = images.shape
    flat = torch.nn.functional.pad(images.reshape(B * N, C, S, S), (pad, pad, pad, pad), mode='replicate')
    dx, dy = rng.integers(0, 2 * pad + 1, size=(2, B * N))
    out = torch.stack([flat[i, :, y:y + S, x:x + S] for i, (x, y) in enumerate(zip(dx, dy))])
    return out.reshape(B, N, C, S, S)


class PolicyProcessor:
    def __init__(self, config: PolicyConfig, norm_stats: NormStats | None = None, tokenizer=None):
        self.config = config
        self.norm_stats = norm_stats or NormStats.identity(config.state_dim, config.action_dim)
        if self.norm_stats.state_mean.shape[0] != config.state_dim:
            raise ValueError(f'norm_stats state dim {self.norm_stats.state_mean.shape[0]} '
                             f'!= config.state_dim {config.state_dim}')
        if self.norm_stats.action_mean.shape[0] != config.action_dim:
            raise ValueError(f'norm_stats action dim {self.norm_stats.action_mean.shape[0]} '
                             f'!= config.action_dim {config.action_dim}')
        self.tokenizer = tokenizer if tokenizer is not None else make_tokenizer(config.tokenizer)
        if getattr(self.tokenizer, 'vocab_size', 0) > config.vocab_size:
            raise ValueError(f'tokenizer vocab {self.tokenizer.vocab_size} > config.vocab_size {config.vocab_size}')
        self._prompt_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.space = make_space(config.action_space)      # None: joint space, nothing to convert

    # ------------------------------------------------------------------ pieces
    def image_array(self, img: np.ndarray, name: str = '') -> np.ndarray:
        """(H, W, 3) uint8 -> (3, S, S) float32 in [-1, 1]."""
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'camera {name!r}: image must be (H, W, 3), got {img.shape}')
        if img.dtype != np.uint8:
            raise ValueError(f'camera {name!r}: image must be uint8, got {img.dtype}')
        img = resize_with_pad(img, self.config.image_size)
        return (img.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)

    def images_array(self, images: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """dict name -> image -> ((n_cam, 3, S, S) float32, (n_cam,) bool present)."""
        if not isinstance(images, dict):
            raise TypeError('images must be a dict camera name -> (H, W, 3) uint8')
        c = self.config
        unknown = sorted(set(images) - set(c.camera_names))
        if unknown:
            raise ValueError(f'unknown cameras {unknown}; policy expects {list(c.camera_names)}')
        out = np.full((len(c.camera_names), 3, c.image_size, c.image_size), -1.0, dtype=np.float32)
        present = np.zeros(len(c.camera_names), dtype=bool)
        for i, name in enumerate(c.camera_names):
            if images.get(name) is not None:
                out[i] = self.image_array(images[name], name)
                present[i] = True
        if not present.any():
            raise ValueError(f'no camera image given (expected some of {list(c.camera_names)})')
        return out, present

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        s = np.asarray(state, dtype=np.float64)
        if s.shape[-1] != self.config.state_dim:
            raise ValueError(f'state must have {self.config.state_dim} dims, got shape {s.shape}')
        if not np.all(np.isfinite(s)):
            raise ValueError('state contains NaN/inf')
        z = (s - self.norm_stats.state_mean) / self.norm_stats.state_std
        return self._pad(z, self.config.max_state_dim)

    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape[-1] != self.config.action_dim:
            raise ValueError(f'actions must have {self.config.action_dim} dims, got shape {a.shape}')
        if not np.all(np.isfinite(a)):
            raise ValueError('actions contain NaN/inf')
        z = (a - self.norm_stats.action_mean) / self.norm_stats.action_std
        return self._pad(z, self.config.max_action_dim)

    def unnormalize_actions(self, chunk) -> np.ndarray:
        """Model output (H, max_action_dim) or (1, H, max_action_dim) (tensor or array) -> (H, action_dim)
        float64 joint targets. Raises on NaN/inf so the caller can hold a safe state."""
        if torch.is_tensor(chunk):
            chunk = chunk.detach().float().cpu().numpy()
        a = np.asarray(chunk, dtype=np.float64)
        if a.ndim == 3:
            if a.shape[0] != 1:
                raise ValueError(f'unnormalize_actions takes one chunk; got batch of {a.shape[0]}')
            a = a[0]
        if a.ndim != 2 or a.shape[1] < self.config.action_dim:
            raise ValueError(f'chunk must be (H, >= {self.config.action_dim}), got {a.shape}')
        a = a[:, :self.config.action_dim] * self.norm_stats.action_std + self.norm_stats.action_mean
        if not np.all(np.isfinite(a)):
            raise ValueError('policy produced non-finite actions')
        return a

    def joint_targets(self, chunk, state) -> np.ndarray:
        """Model output -> (H, 7+) joint targets for the executor: unnormalised and, in tool space,
        solved by inverse kinematics from the measured joints at the start of `state` (all NaN
        when that fails: the executor refuses the chunk and the robot holds)."""
        a = self.unnormalize_actions(chunk)
        return a if self.space is None else self.space.decode(a, np.asarray(state)[:ROBOT_DIM])

    def tokenize(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        hit = self._prompt_cache.get(prompt)
        if hit is None:
            hit = tokenize_prompt(self.tokenizer, prompt, self.config.tokenizer_max_length)
            if len(self._prompt_cache) < 1024:
                self._prompt_cache[prompt] = hit
        return hit

    @staticmethod
    def _pad(x: np.ndarray, dim: int) -> np.ndarray:
        out = np.zeros(x.shape[:-1] + (dim,), dtype=np.float32)
        out[..., :x.shape[-1]] = x
        return out

    # ------------------------------------------------------------------ inference
    def prepare_observation(self, images: dict[str, np.ndarray], state: np.ndarray,
                            prompt: str) -> dict[str, torch.Tensor]:
        """One observation -> model batch with B=1 (CPU tensors; the policy moves them). `state`:
        the robot's joints (+ object poses), converted to the policy's action_space here."""
        if self.space is not None:
            state = self.space.encode(state)
        im, present = self.images_array(images)
        ids, mask = self.tokenize(prompt)
        return {
            'images': torch.from_numpy(im)[None],
            'image_masks': torch.from_numpy(present)[None],
            'lang_tokens': torch.from_numpy(ids)[None],
            'lang_masks': torch.from_numpy(mask)[None],
            'state': torch.from_numpy(self.normalize_state(state))[None],
        }

    # ------------------------------------------------------------------ training
    def chunk_arrays(self, actions: np.ndarray,
                     action_is_pad: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(h, action_dim) chunk, h <= H -> ((H, max_action_dim) normalised, (H,) bool valid).
        Short chunks (episode end) are padded with their last action and masked out."""
        H = self.config.chunk_size
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[0] > H:
            raise ValueError(f'action chunk must be (1..{H}, {self.config.action_dim}), got {a.shape}')
        valid = np.zeros(H, dtype=bool)
        valid[:a.shape[0]] = True
        if action_is_pad is not None:
            p = np.asarray(action_is_pad, dtype=bool).reshape(-1)
            if p.shape[0] != a.shape[0]:
                raise ValueError('action_is_pad length differs from the chunk length')
            valid[:a.shape[0]] &= ~p
        if a.shape[0] < H:
            a = np.concatenate([a, np.repeat(a[-1:], H - a.shape[0], axis=0)], axis=0)
        return self.normalize_actions(a), valid

    def prepare_batch(self, samples) -> dict[str, torch.Tensor]:
        """Training batch. `samples` is either a list of dicts
            {'images': {name: (H, W, 3) uint8}, 'state': (Ds,), 'prompt': str,
             'action': (h <= H, Da), optional 'action_is_pad': (h,) bool}
        or one dict of stacked arrays
            {'images': {name: (B, H, W, 3) uint8}, 'state': (B, Ds), 'prompt': str | list[str],
             'action': (B, H, Da), optional 'action_is_pad': (B, H) bool}."""
        if isinstance(samples, dict):
            samples = self._unstack(samples)
        if not isinstance(samples, Sequence) or len(samples) == 0:
            raise ValueError('prepare_batch needs a non-empty list of samples or a dict of stacked arrays')
        ims, pres, ids, masks, states, acts, valid = [], [], [], [], [], [], []
        for i, s in enumerate(samples):
            try:
                im, p = self.images_array(s['images'])
                t, m = self.tokenize(s.get('prompt', ''))
                st = self.normalize_state(s['state'])
                a, v = self.chunk_arrays(s['action'], s.get('action_is_pad'))
            except KeyError as e:
                raise KeyError(f'sample {i} is missing {e}') from None
            except ValueError as e:
                raise ValueError(f'sample {i}: {e}') from None
            ims.append(im)
            pres.append(p)
            ids.append(t)
            masks.append(m)
            states.append(st)
            acts.append(a)
            valid.append(v)
        B = len(samples)
        dim_mask = np.zeros((B, self.config.max_action_dim), dtype=bool)
        dim_mask[:, :self.config.action_dim] = True
        return {
            'images': torch.from_numpy(np.stack(ims)),
            'image_masks': torch.from_numpy(np.stack(pres)),
            'lang_tokens': torch.from_numpy(np.stack(ids)),
            'lang_masks': torch.from_numpy(np.stack(masks)),
            'state': torch.from_numpy(np.stack(states)),
            'action': torch.from_numpy(np.stack(acts)),
            'action_mask': torch.from_numpy(np.stack(valid)),
            'action_dim_mask': torch.from_numpy(dim_mask),
        }

    @staticmethod
    def _unstack(d: dict) -> list[dict]:
        try:
            B = len(d['state'])
        except KeyError:
            raise KeyError("stacked batch is missing 'state'") from None
        prompts = d.get('prompt', '')
        if isinstance(prompts, str):
            prompts = [prompts] * B
        if len(prompts) != B:
            raise ValueError(f'{len(prompts)} prompts for a batch of {B}')
        out = []
        for i in range(B):
            s = {'images': {k: (v[i] if v is not None else None) for k, v in d['images'].items()},
                 'state': d['state'][i], 'prompt': prompts[i], 'action': d['action'][i]}
            if d.get('action_is_pad') is not None:
                s['action_is_pad'] = d['action_is_pad'][i]
            out.append(s)
        return out


__all__ = ['NormStats', 'PolicyProcessor', 'random_shift', 'resize_with_pad', 'MIN_STD']
