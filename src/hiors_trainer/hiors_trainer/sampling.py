"""Hi-ORS rejection sampling and sample indexing (ROS-agnostic, numpy only).

Works on any Episode-like object with the fields documented in docs/INTERFACES.md:
`info.outcome`, `info.reward`, `info.episode_id`, `state` (T, D), `action` (T, D),
`intervention` (T,) bool.

Paper (arXiv 2510.26406), followed where it is specific:
  * return R(tau) is the human's success label (1/0) unless a success classifier is given;
  * keep an episode iff R(tau) >= m, with a rising schedule m1 <= m2 <= ...;
  * drop very short episodes (<= N steps, paper: 2) and no-op transitions (state barely moves);
  * labels are what the robot actually executed over the next H steps (human and policy alike);
  * varied frequency: human segments sampled at every step, autonomous ones at the re-plan stride.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# Rejection reasons (episode level and transition level); every rejection is counted by one.
REASON_ABORTED = 'aborted'              # no human label (abort / recovered after a crash)
REASON_BELOW_THRESHOLD = 'below_threshold'
REASON_TOO_SHORT = 'too_short'
REASON_LOAD_ERROR = 'load_error'        # corrupt / unreadable episode
REASON_NO_OP = 'no_op'                  # transition level: state change below threshold
REASON_NO_HUMAN = 'no_human_steps'      # transition level, ablation 'no human correction'
REASON_NOT_HUMAN = 'not_intervention'   # transition level, HG-DAgger keeps human steps only
REASON_BEFORE_TAKEOVER = 'before_takeover'  # transition level: autonomous steps the human then took over from
REASON_NO_SAMPLES = 'no_samples'        # every transition was dropped
REASON_NON_FINITE = 'non_finite'        # NaN/inf in states or actions
REASON_NO_IMAGES = 'no_images'          # none of the policy's cameras was recorded


@dataclass
class ThresholdSchedule:
    """m(n or t): thresholds m1 <= m2 <= ... switching at increasing boundaries.

    `boundaries[i]` is the episode count (unit='episodes') or the seconds since training
    started (unit='seconds') at which thresholds[i + 1] takes over; len(boundaries) =
    len(thresholds) - 1. A single threshold is a fixed m."""
    thresholds: list = field(default_factory=lambda: [1.0])
    boundaries: list = field(default_factory=list)
    unit: str = 'episodes'

    def __post_init__(self):
        self.thresholds = [float(x) for x in self.thresholds]
        self.boundaries = [float(x) for x in self.boundaries]
        if not self.thresholds:
            raise ValueError('threshold schedule needs at least one threshold')
        if any(b < a for a, b in zip(self.thresholds, self.thresholds[1:])):
            raise ValueError(f'thresholds must be non-decreasing (m1 <= m2 <= ...): {self.thresholds}')
        if len(self.boundaries) != len(self.thresholds) - 1:
            raise ValueError(f'{len(self.thresholds)} thresholds need {len(self.thresholds) - 1} '
                             f'boundaries, got {len(self.boundaries)}')
        if any(b <= a for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f'schedule boundaries must increase: {self.boundaries}')
        if self.unit not in ('episodes', 'seconds'):
            raise ValueError(f"schedule unit must be 'episodes' or 'seconds', got {self.unit!r}")

    def threshold(self, episodes_seen: int = 0, elapsed_s: float = 0.0) -> float:
        x = episodes_seen if self.unit == 'episodes' else elapsed_s
        return self.thresholds[bisect.bisect_right(self.boundaries, x)]


# FilterConfig.pre_takeover_steps: drop every autonomous step of a segment a takeover ended.
WHOLE_SEGMENT = -1


@dataclass
class FilterConfig:
    min_steps: int = 2                  # episodes with <= min_steps steps are dropped (paper: 2)
    noop_threshold: float = 1e-3        # max |state[k+1] - state[k]| below this = no-op step
    use_filters: bool = True            # ablation 'without filters' turns both off
    use_rejection: bool = True          # False: HG-DAgger / BC keep every labelled episode
    keep_aborted: bool = False          # aborted episodes have no label; R treated as 0 if kept
    human_steps: str = 'all'            # 'all' | 'none' (ablation: no human correction) | 'only' (HG-DAgger)
    replan_stride: int = 20             # autonomous segments sampled every k steps (paper: 20 of 50)
    human_stride: int = 1               # intervention segments: dense
    # Autonomous steps before a takeover that are dropped (a filter: off with use_filters=False).
    # The human took over because those actions were heading for a failure; kept, they are cloned
    # as if right, and their chunk labels splice the policy's motion onto the human's reversal
    # (hovering). N > 0: the last N steps before each takeover; WHOLE_SEGMENT (-1): the whole
    # autonomous segment a takeover ended, so the policy's own steps are cloned only from segments
    # that ran on to the episode's end; 0 keeps them all (the paper keeps every step).
    pre_takeover_steps: int = 0

    def __post_init__(self):
        if self.human_steps not in ('all', 'none', 'only'):
            raise ValueError(f"human_steps must be 'all', 'none' or 'only', got {self.human_steps!r}")
        if self.replan_stride < 1 or self.human_stride < 1:
            raise ValueError('sampling strides must be >= 1')
        if self.pre_takeover_steps < WHOLE_SEGMENT:
            raise ValueError(f'pre_takeover_steps must be >= 0, or {WHOLE_SEGMENT} (the whole segment)')


def episode_return(ep, success_classifier=None) -> float:
    """R(tau): the human label (info.reward) or, if given, a classifier's score of the episode."""
    if success_classifier is not None:
        return float(success_classifier(ep))
    return float(ep.info.reward)


@dataclass
class EpisodeDecision:
    episode_id: str
    ret: float
    reason: str = ''                    # '' = passes the episode-level filters
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    transition_rejects: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return not self.reason


def episode_filter(ep, cfg: FilterConfig, success_classifier=None) -> EpisodeDecision:
    """Episode-level filters and per-step sample selection; the threshold test is separate
    (it depends on the schedule at training time, see `accepted`)."""
    info = ep.info
    ret = episode_return(ep, success_classifier)
    d = EpisodeDecision(episode_id=str(info.episode_id), ret=ret)
    if info.outcome == 'abort' and not cfg.keep_aborted and success_classifier is None:
        d.reason = REASON_ABORTED
        return d
    T = len(ep.state)
    if not (np.all(np.isfinite(ep.state)) and np.all(np.isfinite(ep.action))):
        d.reason = REASON_NON_FINITE
        return d
    if cfg.use_filters and T <= cfg.min_steps:
        d.reason = REASON_TOO_SHORT
        return d
    d.indices, d.transition_rejects = sample_indices(ep, cfg)
    if d.indices.size == 0:
        d.reason = REASON_NO_SAMPLES
    return d


def sample_indices(ep, cfg: FilterConfig) -> tuple[np.ndarray, dict]:
    """Start steps of training samples: dense in human segments, every `replan_stride` steps in
    autonomous segments (counted from each segment's start), minus no-op transitions."""
    # The robot's joints: the state's first action-dim entries (object poses a perception module
    # appends after them are not the robot moving, and their estimates jitter).
    state = np.asarray(ep.state, dtype=np.float64)[:, :np.shape(ep.action)[-1]]
    human = np.asarray(ep.intervention, dtype=bool)
    T = len(state)
    rejects = Counter()
    if T == 0:
        return np.zeros(0, dtype=np.int64), {}
    # Motion of each transition k -> k+1 (the last step uses k-1 -> k).
    diff = np.abs(np.diff(state, axis=0)).max(axis=1) if T > 1 else np.full(1, np.inf)
    motion = np.append(diff, diff[-1])
    # Steps to the next policy -> human hand-over (inf where none follows).
    to_takeover = np.full(T, np.inf)
    next_takeover = np.inf
    for k in range(T - 1, -1, -1):
        if k > 0 and human[k] and not human[k - 1]:
            next_takeover = k
        to_takeover[k] = next_takeover - k
    keep = []
    seg_start = 0
    for k in range(T):
        if k > 0 and human[k] != human[k - 1]:
            seg_start = k
        stride = cfg.human_stride if human[k] else cfg.replan_stride
        if (k - seg_start) % stride:
            continue                    # not a sampling point (varied frequency), not a rejection
        if human[k] and cfg.human_steps == 'none':
            rejects[REASON_NO_HUMAN] += 1
            continue
        if not human[k] and cfg.human_steps == 'only':
            rejects[REASON_NOT_HUMAN] += 1
            continue
        if (cfg.use_filters and not human[k] and np.isfinite(to_takeover[k])
                and (cfg.pre_takeover_steps == WHOLE_SEGMENT or to_takeover[k] <= cfg.pre_takeover_steps)):
            rejects[REASON_BEFORE_TAKEOVER] += 1
            continue
        if cfg.use_filters and motion[k] < cfg.noop_threshold:
            rejects[REASON_NO_OP] += 1
            continue
        keep.append(k)
    return np.asarray(keep, dtype=np.int64), dict(rejects)


def accepted(decision: EpisodeDecision, threshold: float, cfg: FilterConfig) -> bool:
    """The Hi-ORS indicator 1[R(tau) >= m] (always 1 when rejection is off)."""
    if not decision.usable:
        return False
    return (not cfg.use_rejection) or decision.ret >= threshold


def action_chunk(action: np.ndarray, k: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Executed actions k .. k+H-1, padded at the episode end with the last action and a mask
    (True = padding)."""
    a = np.asarray(action)
    T = a.shape[0]
    end = min(T, k + horizon)
    chunk = a[k:end]
    pad = np.zeros(horizon, dtype=bool)
    if end - k < horizon:
        pad[end - k:] = True
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], horizon - (end - k), axis=0)], axis=0)
    return chunk, pad


class RejectionStats:
    """Counts of accepted / rejected episodes by reason and rejected transitions by reason."""

    def __init__(self):
        self.episodes = Counter()
        self.transitions = Counter()

    def to_dict(self) -> dict:
        return {'episodes': dict(self.episodes), 'transitions': dict(self.transitions)}

    @classmethod
    def from_dict(cls, d: dict) -> 'RejectionStats':
        s = cls()
        s.episodes.update(d.get('episodes', {}))
        s.transitions.update(d.get('transitions', {}))
        return s
