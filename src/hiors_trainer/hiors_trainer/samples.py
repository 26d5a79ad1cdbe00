"""Training samples from recorded episodes (no ROS).

Labels are what the robot actually executed (the mux's commands, human and policy alike) over the
next H steps, padded with a mask at the episode end. Varied frequency: steps under human control
are sampled densely (every step), autonomous steps at the policy's re-plan stride.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeSamples:
    episode_id: str
    images: dict            # camera -> (T, H, W, 3) uint8
    state: np.ndarray       # (T, 7)
    action: np.ndarray      # (T, 7)
    indices: np.ndarray     # sample start steps
    weight: float           # rejection indicator 1[R >= m]


def sample_indices(intervention: np.ndarray, keep: np.ndarray, stride: int) -> np.ndarray:
    """Dense indices inside intervention segments, every `stride` steps elsewhere."""
    out = []
    since = stride                       # take the first autonomous step
    for t in range(len(intervention)):
        if intervention[t]:
            if keep[t]:
                out.append(t)
            since = stride
        else:
            if since >= stride and keep[t]:
                out.append(t)
                since = 0
            since += 1
    return np.asarray(out, dtype=np.int64)


def action_chunk(action: np.ndarray, t: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, D) executed actions from step t, padded by repeating the last one, and the pad mask."""
    chunk = action[t:t + horizon]
    pad = np.zeros(horizon, bool)
    if len(chunk) < horizon:
        pad[len(chunk):] = True
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], horizon - len(chunk), axis=0)])
    return chunk.astype(np.float32), pad


def build_samples(episode, episode_id: str, keep: np.ndarray, stride: int, weight: float,
                  cameras) -> EpisodeSamples | None:
    missing = [c for c in cameras if c not in episode.images]
    if missing:
        raise ValueError(f'episode {episode_id} has no camera {missing}')
    indices = sample_indices(np.asarray(episode.intervention, bool), keep, stride)
    if len(indices) == 0:
        return None
    return EpisodeSamples(episode_id, {c: episode.images[c] for c in cameras},
                          np.asarray(episode.state, np.float32), np.asarray(episode.action, np.float32),
                          indices, float(weight))
