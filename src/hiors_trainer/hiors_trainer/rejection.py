"""Hi-ORS rejection sampling (no ROS): which episodes and which steps are trained on.

An episode's return R is its human label (reward 1 success / 0 otherwise). It is kept when
R >= m, where m follows a rising schedule m1 <= m2 <= ... indexed by the number of episodes seen.
Very short episodes and no-op steps (the state barely moves) are dropped. Every rejection is
counted by reason.
"""
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

METHODS = ('hiors', 'bc', 'hg_dagger', 'hiors_no_human', 'hiors_fixed_threshold', 'hiors_no_filters')


@dataclass
class RejectionConfig:
    method: str = 'hiors'
    # Rising threshold schedule: thresholds[i] applies from episode count schedule_episodes[i] on.
    thresholds: list[float] = field(default_factory=lambda: [0.5, 1.0])
    schedule_episodes: list[int] = field(default_factory=lambda: [0, 0])
    min_steps: int = 2                 # episodes with <= this many steps are dropped
    noop_threshold: float = 1e-3       # joint-space change (rad, L2) below which a step is a no-op


class RejectionSampler:
    def __init__(self, config: RejectionConfig):
        if config.method not in METHODS:
            raise ValueError(f'unknown method {config.method!r}; choose one of {METHODS}')
        if len(config.thresholds) != len(config.schedule_episodes) or not config.thresholds:
            raise ValueError('thresholds and schedule_episodes must be non-empty and of equal length')
        if any(b < a for a, b in zip(config.thresholds, config.thresholds[1:])):
            raise ValueError(f'threshold schedule must be non-decreasing: {config.thresholds}')
        self.cfg = config
        self.counts = Counter()

    def threshold(self, episodes_seen: int) -> float:
        m = self.cfg.thresholds[0]
        if self.cfg.method == 'hiors_fixed_threshold':
            return self.cfg.thresholds[-1]
        for start, value in zip(self.cfg.schedule_episodes, self.cfg.thresholds):
            if episodes_seen >= start:
                m = value
        return m

    def accept_episode(self, outcome: str, reward: float, steps: int, episodes_seen: int,
                       is_demo: bool = False) -> tuple[bool, str]:
        """(accepted, reason). Demonstrations are accepted when successful."""
        method = self.cfg.method
        filters = method != 'hiors_no_filters'
        if method == 'bc' and not is_demo:
            reason = 'not_demonstration'
        elif outcome == 'abort':
            reason = 'aborted'
        elif filters and steps <= self.cfg.min_steps:
            reason = 'too_short'
        elif method == 'hg_dagger':
            reason = ''                              # HG-DAgger keeps every episode's human data
        elif reward < self.threshold(episodes_seen):
            reason = 'low_return'
        else:
            reason = ''
        self.counts['accepted' if not reason else 'rejected'] += 1
        if reason:
            self.counts[f'rejected_{reason}'] += 1
        return not reason, reason

    def step_mask(self, state: np.ndarray, intervention: np.ndarray) -> np.ndarray:
        """Which steps of an accepted episode become training samples (before striding)."""
        n = len(state)
        keep = np.ones(n, bool)
        if self.cfg.method != 'hiors_no_filters' and n > 1:
            moved = np.linalg.norm(np.diff(state, axis=0), axis=1)
            noop = np.concatenate([moved < self.cfg.noop_threshold, [False]])
            keep &= ~noop
            self.counts['dropped_noop_steps'] += int(noop.sum())
        if self.cfg.method == 'hg_dagger':
            keep &= intervention                      # only what the human did
        elif self.cfg.method == 'hiors_no_human':
            keep &= ~intervention                     # ablation: no human corrections
        return keep
