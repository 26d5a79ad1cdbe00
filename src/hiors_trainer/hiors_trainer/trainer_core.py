"""The Hi-ORS learner (no ROS): keeps the accepted sample set, trains the policy with the
rejection-weighted flow-matching loss (AdamW, cosine warm-up/decay, grad clipping), and saves
resumable, atomic checkpoints."""
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hiors_policy.checkpoint import load_checkpoint, save_checkpoint
from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.processing import NormStats, PolicyProcessor

from .rejection import RejectionConfig, RejectionSampler
from .samples import EpisodeSamples, action_chunk, build_samples

log = logging.getLogger('hiors_trainer')

# Paper defaults (pi0 fine-tuning) and a CPU profile for the small presets trained from scratch.
PROFILES = {
    'pi0': dict(lr=2.5e-5, final_lr=2.5e-6, warmup_steps=100, decay_steps=500),
    'cpu': dict(lr=1e-3, final_lr=1e-4, warmup_steps=50, decay_steps=5000),
}


@dataclass
class TrainerConfig:
    preset: str = 'tiny'
    profile: str = 'cpu'               # 'pi0' = the paper's schedule
    lr: float = 0.0                    # 0 = from the profile
    final_lr: float = 0.0
    warmup_steps: int = 0
    decay_steps: int = 0
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    batch_size: int = 8
    stride: int = 20                   # autonomous samples every k steps (the re-plan stride)
    rate_hz: float = 10.0
    prompt: str = 'insert the peg into the hole'
    demo_ratio: float = 0.0            # share of each batch drawn from the demonstration set
    seed: int = 0
    rejection: RejectionConfig = field(default_factory=RejectionConfig)

    def schedule(self) -> dict:
        base = dict(PROFILES[self.profile])
        for k in base:
            if getattr(self, k):
                base[k] = getattr(self, k)
        return base


def lr_at(step: int, lr: float, final_lr: float, warmup_steps: int, decay_steps: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps))
    return final_lr + 0.5 * (lr - final_lr) * (1 + math.cos(math.pi * progress))


class Trainer:
    def __init__(self, config: TrainerConfig, init_checkpoint: str = '', norm_stats: NormStats | None = None):
        self.cfg = config
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        if init_checkpoint:
            self.policy, self.policy_config, stats, _ = load_checkpoint(init_checkpoint)
            self.norm_stats = norm_stats or stats
        else:
            self.policy_config = make_config(config.preset)
            self.policy = Pi0Policy(self.policy_config)
            self.norm_stats = norm_stats
        self.policy.train()
        self.processor = PolicyProcessor(self.policy_config, self.norm_stats or NormStats.identity(7, 7))
        self.sched = config.schedule()
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.sched['lr'], betas=config.betas,
                                           weight_decay=config.weight_decay)
        self.rejection = RejectionSampler(config.rejection)
        self.step = 0
        self.online: list[EpisodeSamples] = []
        self.demos: list[EpisodeSamples] = []
        self.seen: dict[str, str] = {}     # episode id -> '' accepted / rejection reason
        self.episodes_seen = 0
        self.last_loss = float('nan')
        self.samples_per_s = 0.0

    # --- data ------------------------------------------------------------------------------
    def set_norm_stats_from(self, episodes):
        states = np.concatenate([e.state for e in episodes])
        actions = np.concatenate([e.action for e in episodes])
        self.norm_stats = NormStats.from_arrays(states, actions)
        self.processor = PolicyProcessor(self.policy_config, self.norm_stats)

    def add_episode(self, episode, info, is_demo: bool = False) -> tuple[bool, str]:
        """Apply rejection sampling to one finished episode; keep its samples if accepted."""
        if info.episode_id in self.seen:
            return self.seen[info.episode_id] == '', 'already seen'
        accepted, reason = self.rejection.accept_episode(info.outcome, float(info.reward), len(episode.state),
                                                         self.episodes_seen, is_demo)
        self.episodes_seen += 1
        self.seen[info.episode_id] = reason
        if not accepted:
            return False, reason
        keep = self.rejection.step_mask(np.asarray(episode.state), np.asarray(episode.intervention, bool))
        samples = build_samples(episode, info.episode_id, keep, self.cfg.stride, 1.0,
                                self.policy_config.camera_names)
        if samples is None:
            self.seen[info.episode_id] = 'no_samples'
            self.rejection.counts['rejected_no_samples'] += 1
            return False, 'no_samples'
        (self.demos if is_demo else self.online).append(samples)
        return True, ''

    def num_samples(self) -> int:
        return sum(len(s.indices) for s in self.online + self.demos)

    def _draw(self, pool, n):
        sizes = np.array([len(s.indices) for s in pool], float)
        picks = self.rng.choice(len(pool), size=n, p=sizes / sizes.sum())
        out = []
        for i in picks:
            s = pool[i]
            t = int(s.indices[self.rng.integers(len(s.indices))])
            chunk, pad = action_chunk(s.action, t, self.policy_config.chunk_size)
            out.append(({'images': {c: s.images[c][t] for c in s.images}, 'state': s.state[t],
                         'prompt': self.cfg.prompt, 'action': chunk, 'action_is_pad': pad}, s.weight))
        return out

    def sample_batch(self, batch_size: int):
        pools = []
        if self.demos and self.online and self.cfg.demo_ratio > 0:
            n_demo = int(round(batch_size * self.cfg.demo_ratio))
            pools = [(self.demos, n_demo), (self.online, batch_size - n_demo)]
        else:
            pools = [(self.online + self.demos, batch_size)]
        items = [x for pool, n in pools if n > 0 for x in self._draw(pool, n)]
        batch = self.processor.prepare_batch([s for s, _ in items])
        weights = torch.tensor([w for _, w in items], dtype=torch.float32)
        return batch, weights

    # --- optimisation ------------------------------------------------------------------------
    def train_step(self) -> float:
        if self.num_samples() == 0:
            raise RuntimeError('no accepted samples to train on')
        t0 = time.perf_counter()
        lr = lr_at(self.step, **self.sched)
        for group in self.optimizer.param_groups:
            group['lr'] = lr
        batch, weights = self.sample_batch(self.cfg.batch_size)
        # Hi-ORS objective: rejection indicator x flow-matching loss (all denoising times).
        per_sample = self.policy.compute_loss(batch, sample_weight=weights)
        loss = per_sample.sum() / weights.sum().clamp(min=1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.last_loss = float(loss.detach())
        self.samples_per_s = self.cfg.batch_size / (time.perf_counter() - t0)
        return self.last_loss

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]['lr']

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, checkpoint_dir: str, keep_last: int = 5) -> str:
        """Policy checkpoint (what the robot loads) + optimizer and trainer state (for resume).
        Every file is written atomically; the state file is written last, so a crash leaves the
        previous consistent state."""
        os.makedirs(checkpoint_dir, exist_ok=True)
        version = f'{self.step:06d}'
        path = os.path.join(checkpoint_dir, f'policy_{version}.safetensors')
        self.policy.eval()
        save_checkpoint(path, self.policy, self.policy_config, self.norm_stats or NormStats.identity(7, 7), version)
        self.policy.train()
        opt_tensors, opt_meta = {}, {'param_groups': [], 'state_keys': {}}
        state = self.optimizer.state_dict()
        for i, s in state['state'].items():
            for k, v in s.items():
                if torch.is_tensor(v):
                    opt_tensors[f'{i}.{k}'] = v.contiguous()
        opt_meta['param_groups'] = state['param_groups']
        opt_path = os.path.join(checkpoint_dir, f'optimizer_{version}.safetensors')
        save_file(opt_tensors, opt_path + '.tmp')
        os.replace(opt_path + '.tmp', opt_path)
        trainer_state = {'step': self.step, 'version': version, 'policy': os.path.basename(path),
                         'optimizer': os.path.basename(opt_path), 'optimizer_meta': opt_meta,
                         'seen': self.seen, 'episodes_seen': self.episodes_seen,
                         'counts': dict(self.rejection.counts), 'config': asdict(self.cfg),
                         'rng': self.rng.bit_generator.state}
        tmp = os.path.join(checkpoint_dir, 'trainer_state.json.tmp')
        with open(tmp, 'w') as f:
            json.dump(trainer_state, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(checkpoint_dir, 'trainer_state.json'))
        self._prune(checkpoint_dir, keep_last)
        return path

    @staticmethod
    def _prune(checkpoint_dir: str, keep_last: int):
        for prefix in ('policy_', 'optimizer_'):
            files = sorted(f for f in os.listdir(checkpoint_dir) if f.startswith(prefix) and f.endswith('.safetensors'))
            for old in files[:-keep_last] if keep_last > 0 else []:
                os.remove(os.path.join(checkpoint_dir, old))

    @classmethod
    def resume(cls, config: TrainerConfig, checkpoint_dir: str) -> 'Trainer | None':
        """Rebuild the trainer from the last consistent state in `checkpoint_dir`, or None."""
        state_path = os.path.join(checkpoint_dir, 'trainer_state.json')
        if not os.path.exists(state_path):
            return None
        with open(state_path) as f:
            st = json.load(f)
        trainer = cls(config, init_checkpoint=os.path.join(checkpoint_dir, st['policy']))
        tensors = load_file(os.path.join(checkpoint_dir, st['optimizer']))
        opt_state = {'state': {}, 'param_groups': st['optimizer_meta']['param_groups']}
        for key, value in tensors.items():
            i, name = key.split('.', 1)
            opt_state['state'].setdefault(int(i), {})[name] = value
        trainer.optimizer.load_state_dict(opt_state)
        trainer.step = st['step']
        trainer.episodes_seen = st['episodes_seen']
        trainer.rejection.counts.update(st['counts'])
        # Episodes are re-read from disk on resume; remember which were already judged so none
        # is counted twice, and re-admit the accepted ones' samples.
        trainer._resume_seen = st['seen']
        trainer.rng.bit_generator.state = st['rng']
        return trainer

    def readmit(self, episode, info, is_demo: bool = False) -> bool:
        """After resume: restore an episode judged before the crash without judging it again."""
        prior = getattr(self, '_resume_seen', {})
        if info.episode_id not in prior:
            return False
        self.seen[info.episode_id] = prior[info.episode_id]
        if prior[info.episode_id] == '':
            keep = self.rejection.step_mask(np.asarray(episode.state), np.asarray(episode.intervention, bool))
            samples = build_samples(episode, info.episode_id, keep, self.cfg.stride, 1.0,
                                    self.policy_config.camera_names)
            if samples is not None:
                (self.demos if is_demo else self.online).append(samples)
        return True
