"""Episode intake: finds finished episodes, loads and filters each one once, and keeps what the
decisions say: the ledger of online episodes, the kept episodes, the accepted samples under the
threshold schedule, and the rejection counts (the one source of the accepted / rejected numbers).
"""
from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from hiors_common.robot import ARM_JOINTS

from .sampling import (REASON_BELOW_THRESHOLD, REASON_LOAD_ERROR, REASON_NO_IMAGES, EpisodeDecision, FilterConfig,
                       RejectionStats, ThresholdSchedule, accepted, action_chunk, episode_filter)

if TYPE_CHECKING:
    from .core import TrainerConfig

log = logging.getLogger('hiors_trainer')


@dataclass
class Stored:
    """One kept episode: its decision and the arrays its samples are cut from."""
    decision: EpisodeDecision
    state: np.ndarray
    action: np.ndarray
    images: dict
    prompt: str
    demo: bool = False
    human: np.ndarray | None = None      # (T,) bool: the steps a person commanded (intervention)
    label_rows: dict = field(default_factory=dict)   # label_source -> (T, D) labels, built on first use


class Intake:
    """Episode discovery, loading and per-episode decisions; the ledger, the kept episodes, the
    accepted-sample index and the rejection counts. `lister(dir)` lists episodes, `loader(info,
    rate_hz=)` loads one (default: hiors_recorder.dataset)."""

    def __init__(self, cfg: TrainerConfig, fcfg: FilterConfig, sched: ThresholdSchedule, use_online: bool = True,
                 lister=None, loader=None, success_classifier=None):
        self.cfg, self.fcfg, self.sched = cfg, fcfg, sched
        self.use_online = use_online
        if lister is None or loader is None:
            from hiors_recorder.dataset import list_episodes, load_episode
            lister = lister or list_episodes
            loader = loader or load_episode
        self._list, self._load = lister, loader
        self.success_classifier = success_classifier
        self.cameras = None                  # the policy's cameras once it is built; None keeps every one
        self.estimator = None                # ObjectPoseEstimator: appends object poses to joint-only states
        self.space = None                    # hiors_policy.action_space.ToolSpace: episodes kept in tool space
        self.ledger: dict[str, dict] = {}    # episode_id -> {'ret', 'reason', 'samples'} (online)
        self.store: dict[str, Stored] = {}
        self.stats = RejectionStats()
        self.t_start = time.time()
        self.elapsed_before = 0.0            # training seconds before a resume (time schedule)

    def restore(self, ledger: dict, stats: dict, elapsed_s: float):
        """Take back a checkpoint's ledger, rejection counts and training time."""
        self.ledger = ledger
        self.stats = RejectionStats.from_dict(stats)
        self.elapsed_before = elapsed_s

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + (time.time() - self.t_start)

    def threshold(self) -> float:
        return self.sched.threshold(len(self.ledger), self.elapsed_s)

    # ------------------------------------------------------------------ loading
    def _load_one(self, info, demo: bool):
        """Load, filter and keep one episode; a corrupt one is skipped with a warning."""
        eid = str(info.episode_id)
        rate = self.cfg.rate_hz or None
        try:
            ep = self._load(info, rate_hz=rate)
            dec = episode_filter(ep, self.fcfg, self.success_classifier)
        except Exception as exc:  # noqa: BLE001 - any bad episode must not stop training
            log.warning('skipping corrupt episode %s: %s', eid, exc)
            return EpisodeDecision(eid, 0.0, REASON_LOAD_ERROR), None
        if demo and dec.usable and dec.ret < self.sched.thresholds[0]:
            return dec, ep                 # a failed demonstration is not a demonstration
        if dec.usable:
            cams = self.cameras
            images = {k: v for k, v in ep.images.items() if cams is None or k in cams}
            if not images:
                log.warning('skipping episode %s: none of the cameras %s was recorded', eid, cams)
                dec.reason = REASON_NO_IMAGES
                return dec, ep
            state = np.asarray(ep.state, np.float32)
            if self.estimator is not None and state.shape[1] == self.estimator.config.joint_dim:
                from hiors_policy.object_pose import episode_states
                try:
                    state = episode_states(state, ep.images, self.estimator)
                except ValueError as exc:        # e.g. a camera the estimator reads was not recorded
                    log.warning('skipping episode %s: %s', eid, exc)
                    dec.reason = REASON_LOAD_ERROR
                    return dec, ep
            action = np.asarray(ep.action, np.float32)
            if self.space is not None:           # once per episode, not per sample
                state, action = self.space.encode(state), self.space.encode(action)
            self.store[('demo:' if demo else '') + eid] = Stored(
                dec, state, action, images,
                str(getattr(ep.info, 'task', '') or ''), demo, np.asarray(ep.intervention, bool))
        return dec, ep

    def ingest(self) -> int:
        """Read newly finished episodes (and, first time, the demos). Returns how many new ones."""
        new = 0
        if self.cfg.demo_dir and not any(s.demo for s in self.store.values()) and \
                (self.cfg.demo_ratio > 0 or self.cfg.demo_mix == 'pooled' or not self.use_online):
            for info in self._list(os.path.expanduser(self.cfg.demo_dir)):
                self._load_one(info, demo=True)
        if not self.use_online:
            return 0
        for info in self._list(os.path.expanduser(self.cfg.episode_dir)):
            eid = str(info.episode_id)
            if eid in self.store:
                continue
            known = eid in self.ledger
            if known and self.ledger[eid]['reason']:
                continue                   # rejected before a restart: nothing to reload
            dec, _ = self._load_one(info, demo=False)
            if known:
                continue                   # reloaded after a resume: counted once already
            self.ledger[eid] = {'ret': dec.ret, 'reason': dec.reason, 'samples': int(dec.indices.size)}
            if dec.reason:
                self.stats.episodes[dec.reason] += 1
            self.stats.transitions.update(dec.transition_rejects)
            new += 1
        return new

    # ------------------------------------------------------------------ accepted samples
    def pools(self):
        """(online, demo) sample lists of (key, step): online ones from accepted episodes only."""
        m = self.threshold()
        online, demo = [], []
        for key, s in self.store.items():
            if s.demo:
                demo.extend((key, int(k)) for k in s.decision.indices)
            elif accepted(s.decision, m, self.fcfg):
                online.extend((key, int(k)) for k in s.decision.indices)
        return online, demo

    def ready(self, min_samples: int) -> bool:
        online, demo = self.pools()
        return len(online) + len(demo) >= max(1, min_samples)

    def draw(self, n: int, rng: np.random.Generator):
        """n (key, step) samples: from the demos at the configured share, else the online pool."""
        online, demo = self.pools()
        if not online and not demo:
            raise RuntimeError('no accepted samples to train on yet')
        # The online pool by class and sampling mass: one class unless autonomous_weight < 1
        # (then the person's steps and the policy's own, the latter at that weight).
        w = self.cfg.autonomous_weight
        if w == 1.0:
            classes = [(online, float(len(online)))]
        else:
            human = [(key, k) for key, k in online if self.store[key].human[k]]
            auto = [(key, k) for key, k in online if not self.store[key].human[k]]
            classes = [(p, m) for p, m in ((human, float(len(human))), (auto, w * len(auto))) if p]
        mass = sum(m for _, m in classes)
        ratio = len(demo) / (len(demo) + mass) if self.cfg.demo_mix == 'pooled' else self.cfg.demo_ratio
        out = []
        for _ in range(n):
            if demo and (not online or rng.random() < ratio):
                pool = demo
            elif len(classes) == 1:
                pool = classes[0][0]
            else:
                pool = classes[0][0] if rng.random() * mass < classes[0][1] else classes[1][0]
            out.append(pool[int(rng.integers(len(pool)))])
        return out

    def labels(self, s: Stored) -> np.ndarray:
        """Per-step label rows: label k = the executed command at k, or the state measured at k+1
        (all joints, or the arm's with the gripper command kept: TrainerConfig.label_source)."""
        source = self.cfg.label_source
        if source == 'executed':
            return s.action
        if source not in s.label_rows:
            reached = np.concatenate([s.state[1:], s.state[-1:]], axis=0)[:, :s.action.shape[1]]
            if source == 'measured_arm':
                reached = np.concatenate([reached[:, :len(ARM_JOINTS)], s.action[:, len(ARM_JOINTS):]], axis=1)
            s.label_rows[source] = reached
        return s.label_rows[source]

    def samples(self, draws, horizon: int) -> tuple[list, list]:
        """The training samples of `draws` with `horizon`-step chunk labels, and each one's
        indicator 1[R >= m] (1 for a demonstration)."""
        samples, ind = [], []
        m = self.threshold()
        for key, k in draws:
            s = self.store[key]
            chunk, pad = action_chunk(self.labels(s), k, horizon)
            samples.append({'images': {c: v[k] for c, v in s.images.items()}, 'state': s.state[k],
                            'prompt': s.prompt, 'action': chunk, 'action_is_pad': pad})
            ind.append(1.0 if s.demo else float(accepted(s.decision, m, self.fcfg)))
        return samples, ind

    def training_prompt(self) -> str:
        """The instruction most of the accepted samples carry."""
        m = self.threshold()
        counts = collections.Counter()
        for s in self.store.values():
            if s.prompt and (s.demo or accepted(s.decision, m, self.fcfg)):
                counts[s.prompt] += len(s.decision.indices)
        return counts.most_common(1)[0][0] if counts else ''

    def norm_stats(self):
        from hiors_policy.processing import NormStats
        s = [x.state for x in self.store.values()]
        a = [x.action for x in self.store.values()]
        return NormStats.from_arrays(np.concatenate(s), np.concatenate(a))

    # ------------------------------------------------------------------ counts
    def summary(self) -> dict:
        """Threshold, episode and sample counts: accepted = the ledger's decisions under the
        indicator `accepted`; rejected = the reasons counted at intake plus those below m."""
        m = self.threshold()
        acc = sum(accepted(EpisodeDecision(e, d['ret'], d['reason']), m, self.fcfg) for e, d in self.ledger.items())
        below = sum(1 for d in self.ledger.values() if not d['reason']) - acc
        rej = dict(self.stats.episodes)
        if below:
            rej[REASON_BELOW_THRESHOLD] = below
        online, demo = self.pools()
        return {'threshold': m, 'episodes_seen': len(self.ledger), 'accepted_episodes': acc,
                'rejected_episodes': rej, 'rejected_transitions': dict(self.stats.transitions),
                'accepted_samples': len(online), 'demo_samples': len(demo)}
