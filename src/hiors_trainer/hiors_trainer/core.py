"""Hi-ORS training core (ROS-agnostic): episode intake, rejection sampling, the Hi-ORS loss,
AdamW + cosine schedule, checkpoints with resumable optimizer state (safetensors + JSON).

    trainer = Trainer(TrainerConfig(episode_dir=..., out_dir=...))
    trainer.resume_or_init()
    trainer.ingest()              # picks up newly finished episodes
    trainer.train_step()          # one optimizer step on the accepted set
    trainer.save_checkpoint()     # -> {'path', 'sha256', 'size', 'format', 'version'}
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save_file as st_save_file

from hiors_common.atomic import atomic_write_bytes, atomic_write_json

from .sampling import (REASON_BELOW_THRESHOLD, REASON_LOAD_ERROR, REASON_NO_IMAGES, EpisodeDecision, FilterConfig,
                       RejectionStats, ThresholdSchedule, accepted, action_chunk, episode_filter)

log = logging.getLogger('hiors_trainer')

# Optimizer profiles. 'pi0' = the paper's / openpi's values; 'cpu' = the tiny CPU model, which
# needs a far higher LR to learn anything within minutes.
PROFILES = {
    'pi0': dict(lr=2.5e-5, end_lr=2.5e-6, warmup_steps=100, decay_steps=500, betas=(0.9, 0.95),
                weight_decay=1e-10, grad_clip=1.0, batch_size=32),
    'cpu': dict(lr=1e-3, end_lr=1e-4, warmup_steps=20, decay_steps=2000, betas=(0.9, 0.95),
                weight_decay=1e-10, grad_clip=1.0, batch_size=8),
}

# With EMA on, the optimizer file also holds the raw (non-averaged) weights under this prefix.
RAW_PREFIX = 'raw_weights.'

# Baselines / ablations selected by config ('method').
METHODS = {
    'hiors': {},
    'bc': dict(use_online=False),                                        # demonstrations only
    'hg_dagger': dict(use_rejection=False, human_steps='only'),          # all intervention data
    'hiors_no_human': dict(human_steps='none'),                          # no human correction
    'hiors_fixed_threshold': dict(fixed_threshold=True),                 # no rising schedule
    'hiors_no_filters': dict(use_filters=False),                         # no short/no-op filters
    'hiors_fixed_frequency': dict(fixed_frequency=True),                 # human steps at the replan
}                                                                        # stride too (not dense)


@dataclass
class TrainerConfig:
    episode_dir: str = '~/.hiors/episodes'
    demo_dir: str = ''                   # initial demonstrations (mixed in at demo_ratio)
    out_dir: str = '~/.hiors/trainer'
    method: str = 'hiors'
    profile: str = 'cpu'
    policy_preset: str = 'tiny'
    init_checkpoint: str = ''            # base policy to start from (e.g. train_offline's output)
    # Rejection sampling.
    thresholds: list[float] = field(default_factory=lambda: [1.0])
    threshold_boundaries: list[float] = field(default_factory=list)
    threshold_unit: str = 'episodes'
    min_steps: int = 2
    noop_threshold: float = 1e-3
    replan_stride: int = 0               # autonomous samples every k steps; 0 = the policy's n_action_steps
    # Autonomous steps within this many steps before a human takeover are not trained on (the
    # human judged them wrong; see sampling.FilterConfig). -1 = the policy's chunk length, so
    # no kept label splices policy motion onto the human's correction; 0 = keep all (paper).
    pre_takeover_steps: int = -1
    demo_ratio: float = 0.0              # fraction of each batch from demo_dir (if any), with demo_mix 'ratio'
    # How demonstrations and online samples share a batch: 'ratio' = demo_ratio of it from the
    # demos, whatever the online buffer's size; 'pooled' = uniform over demos and accepted online
    # samples together, so the online share grows with the data (a few online episodes early on
    # are not trained on hundreds of times over, which makes the policy overfit to them).
    demo_mix: str = 'ratio'
    rate_hz: float = 0.0                 # 0 = one step per executed action
    # Chunk labels: 'executed' = the commands the mux sent (human corrections included);
    # 'measured' = the joint states the robot reached on the following steps (the official
    # Hi-ORS code's choice; on a position-controlled gripper closed on an object the measured
    # opening is the object's width, not the squeezing command).
    label_source: str = 'executed'
    # Optimisation (0 = take the profile's value).
    lr: float = 0.0
    end_lr: float = 0.0
    warmup_steps: int = 0
    decay_steps: int = 0
    grad_clip: float = 0.0
    batch_size: int = 0
    # Exponential moving average of the weights (0 = off). Published checkpoints and
    # model_state() carry the average; training continues on the raw weights. The decay warms up
    # as min(ema_decay, (1 + step) / (10 + step)) so early averages are not stuck at a random
    # init; from an init_checkpoint it is ema_decay from the first step.
    ema_decay: float = 0.0
    # Flow-matching draws (noise, time) per observation and step; the observation is encoded
    # once, so N draws cost far less than N times the step (see Pi0Policy.compute_loss).
    noise_samples: int = 1
    seed: int = 0
    device: str = 'cpu'
    num_threads: int = 1
    parallel: str = 'ddp'                # with torchrun: 'ddp', or 'fsdp' (sharded params/optimizer)
    # Checkpoints.
    checkpoint_every_steps: int = 50
    checkpoint_every_s: float = 0.0      # 0 = off
    keep_last: int = 3
    min_accepted_samples: int = 1        # wait for this many before training
    intake_interval_s: float = 5.0       # re-scan episode_dir this often (and on episode events)
    tensorboard_dir: str = ''            # '' = no TensorBoard logs

    def resolved(self) -> dict:
        p = dict(PROFILES[self.profile])
        for k in ('lr', 'end_lr', 'warmup_steps', 'decay_steps', 'grad_clip', 'batch_size'):
            v = getattr(self, k)
            if v:
                p[k] = v
        return p

    def validate(self):
        if self.profile not in PROFILES:
            raise ValueError(f'unknown profile {self.profile!r}; choose one of {sorted(PROFILES)}')
        if self.method not in METHODS:
            raise ValueError(f'unknown method {self.method!r}; choose one of {sorted(METHODS)}')
        if not 0.0 <= self.demo_ratio <= 1.0:
            raise ValueError('demo_ratio must be in [0, 1]')
        if self.demo_mix not in ('ratio', 'pooled'):
            raise ValueError(f"demo_mix must be 'ratio' or 'pooled', got {self.demo_mix!r}")
        if self.parallel not in ('ddp', 'fsdp'):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if self.keep_last < 1:
            raise ValueError('keep_last must be >= 1')
        if self.noise_samples < 1:
            raise ValueError('noise_samples must be >= 1')
        if self.label_source not in ('executed', 'measured'):
            raise ValueError(f"label_source must be 'executed' or 'measured', got {self.label_source!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError('ema_decay must be in [0, 1)')
        if self.ema_decay and self.parallel == 'fsdp':
            raise ValueError('ema_decay is not supported with parallel=fsdp (sharded weights)')

    def filter_config(self, policy_stride: int = 1, chunk_size: int = 0) -> FilterConfig:
        """`policy_stride` (the policy's n_action_steps) stands in for replan_stride 0, and
        `chunk_size` (its chunk length) for pre_takeover_steps -1."""
        m = METHODS[self.method]
        stride = self.replan_stride or policy_stride
        pre = chunk_size if self.pre_takeover_steps < 0 else self.pre_takeover_steps
        return FilterConfig(min_steps=self.min_steps, noop_threshold=self.noop_threshold,
                            use_filters=m.get('use_filters', True),
                            use_rejection=m.get('use_rejection', True),
                            human_steps=m.get('human_steps', 'all'), replan_stride=stride,
                            human_stride=stride if m.get('fixed_frequency') else 1,
                            pre_takeover_steps=pre)

    def schedule(self) -> ThresholdSchedule:
        if METHODS[self.method].get('fixed_threshold'):
            return ThresholdSchedule([self.thresholds[0]], [], self.threshold_unit)
        return ThresholdSchedule(list(self.thresholds), list(self.threshold_boundaries), self.threshold_unit)


def cosine_lr(step: int, lr: float, end_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """openpi CosineDecaySchedule: linear warm-up to lr, cosine decay to end_lr, then flat."""
    if step < warmup_steps:
        init = lr / (warmup_steps + 1)
        return init + (lr - init) * step / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, decay_steps))
    return end_lr + (lr - end_lr) * 0.5 * (1 + math.cos(math.pi * t))


def hiors_loss(policy, batch: dict, indicator: torch.Tensor, noise=None, time=None,
               noise_samples: int = 1) -> torch.Tensor:
    """L = E[ 1[R(tau) >= m] * || v_theta(u, s, x^u) - (x1 - x0) ||^2 ] over a batch: the
    per-sample flow-matching loss (time u ~ Beta(1.5, 1), every denoising time) weighted by the
    rejection indicator, averaged over the batch."""
    per = policy.compute_loss(batch, noise=noise, time=time, sample_weight=indicator,
                              noise_samples=noise_samples)
    return per.mean()


class FullWeights:
    """A state dict in the shape save_checkpoint expects of a policy (it calls state_dict())."""

    def __init__(self, state_dict: dict):
        self._sd = state_dict

    def state_dict(self) -> dict:
        return self._sd


class _LossModule(torch.nn.Module):
    """DDP needs forward(); this routes it to the policy's loss."""

    def __init__(self, policy, noise_samples: int = 1):
        super().__init__()
        self.policy = policy
        self.noise_samples = noise_samples

    def forward(self, batch, indicator):
        return hiors_loss(self.policy, batch, indicator, noise_samples=self.noise_samples)


# ------------------------------------------------------------------------- file helpers
_atomic_write_bytes = atomic_write_bytes
_atomic_json = atomic_write_json


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """AdamW state -> (flat tensors for safetensors, JSON-able scalars). No pickle."""
    sd = opt.state_dict()
    tensors, scalars = {}, {'param_groups': sd['param_groups'], 'state': {}}
    for idx, st in sd['state'].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f'{idx}.{k}'] = v.detach().to('cpu').contiguous()
            else:
                scalars['state'].setdefault(str(idx), {})[k] = v
    return tensors, scalars


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, scalars: dict):
    state: dict = {}
    for name, v in tensors.items():
        idx, k = name.split('.', 1)
        state.setdefault(int(idx), {})[k] = v
    for idx, d in scalars.get('state', {}).items():
        state.setdefault(int(idx), {}).update(d)
    groups = scalars['param_groups']
    for g in groups:
        if 'betas' in g:
            g['betas'] = tuple(g['betas'])
    opt.load_state_dict({'state': state, 'param_groups': groups})


# ------------------------------------------------------------------------- data
@dataclass
class _Stored:
    decision: EpisodeDecision
    state: np.ndarray
    action: np.ndarray
    images: dict
    prompt: str
    demo: bool = False


class Trainer:
    def __init__(self, cfg: TrainerConfig, loader=None, lister=None, success_classifier=None,
                 rank: int = 0, world_size: int = 1):
        cfg.validate()
        self.cfg = cfg
        self.opt_cfg = cfg.resolved()
        self.fcfg = cfg.filter_config()
        self.sched = cfg.schedule()
        self.method = METHODS[cfg.method]
        self.success_classifier = success_classifier
        self.rank, self.world_size = rank, world_size
        self.fsdp = world_size > 1 and cfg.parallel == 'fsdp'
        if lister is None or loader is None:
            from hiors_recorder.dataset import list_episodes, load_episode
            lister = lister or list_episodes
            loader = loader or load_episode
        self._list, self._load = lister, loader
        self.out_dir = os.path.expanduser(cfg.out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        torch.set_num_threads(max(1, cfg.num_threads))
        self.ledger: dict[str, dict] = {}    # episode_id -> {'ret', 'reason', 'samples'} (online)
        self.store: dict[str, _Stored] = {}
        self.stats = RejectionStats()
        self.step = 0
        self.samples_trained = 0
        self.nonfinite_steps = 0
        self.saved_step = 0
        self.version = 0
        self.t_start = time.time()
        self.elapsed_before = 0.0            # training seconds before a resume (time schedule)
        self.rng = np.random.default_rng(cfg.seed + 1000 * rank)
        self.policy = None
        self.last_loss = float('nan')
        self.samples_per_s = 0.0

    # ------------------------------------------------------------------ model
    def _build(self, state_dict=None, config=None, norm_stats=None):
        from hiors_policy.config import make_config
        from hiors_policy.device import resolve_device
        from hiors_policy.modeling import Pi0Policy
        from hiors_policy.processing import PolicyProcessor
        self.device = resolve_device(self.cfg.device)
        torch.manual_seed(self.cfg.seed)
        self.config = config or make_config(self.cfg.policy_preset)
        if not self.cfg.replan_stride or self.cfg.pre_takeover_steps < 0:
            # Varied frequency: autonomous segments are sampled where the policy re-planned;
            # steps before a takeover are dropped over the policy's chunk length.
            self.fcfg = self.cfg.filter_config(policy_stride=self.config.n_action_steps,
                                               chunk_size=self.config.chunk_size)
        self.policy = Pi0Policy(self.config).to(self.device)
        if state_dict is not None:
            self.policy.load_state_dict(state_dict, strict=True)
        self.policy.train()
        self.norm_stats = norm_stats
        self.processor = PolicyProcessor(self.config, norm_stats)
        o = self.opt_cfg
        self.loss_module = _LossModule(self.policy, self.cfg.noise_samples)
        if self.fsdp:
            # FSDP2, one group at the root: parameters, gradients and AdamW moments are sharded
            # across ranks and gathered for the step (the joint layers call sub-modules directly,
            # not their forward(), so per-layer groups would not get their gather hooks).
            from torch.distributed.fsdp import fully_shard
            fully_shard(self.loss_module)
        elif self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == 'cuda' else None
            # A few parameters never reach the loss (the prefix LM's last-layer outputs are not
            # read by the action expert), so DDP must look for unused ones.
            self.loss_module = DDP(self.loss_module, device_ids=ids, find_unused_parameters=True)
        self.ema = ({k: v.detach().clone() for k, v in self.policy.state_dict().items()}
                    if self.cfg.ema_decay else None)
        # After sharding: the optimizer must hold the (sharded) parameters.
        self.optimizer = torch.optim.AdamW(self.loss_module.parameters(), lr=o['lr'], betas=o['betas'],
                                           weight_decay=o['weight_decay'])

    def resume_or_init(self, config=None) -> bool:
        """Resume model, optimizer, step and the episode ledger from the last checkpoint in
        out_dir; else start from init_checkpoint or random init (from `config`, a PolicyConfig,
        default: the policy_preset's). True if resumed."""
        latest = os.path.join(self.out_dir, 'latest.json')
        if os.path.exists(latest):
            with open(latest) as f:
                ptr = json.load(f)
            from hiors_policy.checkpoint import read_metadata
            ckpt = os.path.join(self.out_dir, ptr['checkpoint'])
            config, norm_stats, _, _ = read_metadata(ckpt)
            self._build(st_load_file(ckpt), config, norm_stats)
            with open(os.path.join(self.out_dir, ptr['state_json'])) as f:
                st = json.load(f)
            if not st['optimizer'].get('fsdp') and not self.fsdp:
                tensors = st_load_file(os.path.join(self.out_dir, ptr['optimizer']))
                raw = {k[len(RAW_PREFIX):]: v for k, v in tensors.items() if k.startswith(RAW_PREFIX)}
                if raw:
                    # The checkpoint holds the EMA weights; training resumes on the raw ones.
                    if self.ema is not None:
                        self.ema = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
                    self.policy.load_state_dict(raw, strict=True)
                optimizer_from_tensors(self.optimizer, {k: v for k, v in tensors.items()
                                                        if not k.startswith(RAW_PREFIX)}, st['optimizer'])
            else:
                log.warning('FSDP run: AdamW moments restart from zero on resume (weights resume)')
            self.step, self.version = st['step'], st['version']
            self.saved_step = self.step
            self.samples_trained = st['samples_trained']
            self.ledger = st['ledger']
            self.stats = RejectionStats.from_dict(st['stats'])
            self.elapsed_before = st.get('elapsed_s', 0.0)
            self.rng = np.random.default_rng(self.cfg.seed + 1000 * self.rank + self.step)
            log.info('resumed from %s at step %d (%d episodes in the ledger)', ckpt, self.step, len(self.ledger))
            return True
        if self.cfg.init_checkpoint:
            from hiors_policy.checkpoint import read_metadata
            config, norm_stats, _, _ = read_metadata(self.cfg.init_checkpoint)
            self._build(st_load_file(self.cfg.init_checkpoint), config, norm_stats)
        else:
            self._build(config=config)
        return False

    # ------------------------------------------------------------------ intake
    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + (time.time() - self.t_start)

    def threshold(self) -> float:
        return self.sched.threshold(len(self.ledger), self.elapsed_s)

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
            cams = self.config.camera_names if self.policy is not None else None
            images = {k: v for k, v in ep.images.items() if cams is None or k in cams}
            if not images:
                log.warning('skipping episode %s: none of the cameras %s was recorded', eid, cams)
                dec.reason = REASON_NO_IMAGES
                return dec, ep
            self.store[('demo:' if demo else '') + eid] = _Stored(
                dec, np.asarray(ep.state, np.float32), np.asarray(ep.action, np.float32), images,
                str(getattr(ep.info, 'task', '') or ''), demo)
        return dec, ep

    def ingest(self) -> int:
        """Read newly finished episodes (and, first time, the demos). Returns how many new ones."""
        new = 0
        if self.cfg.demo_dir and not any(s.demo for s in self.store.values()) and \
                (self.cfg.demo_ratio > 0 or self.cfg.demo_mix == 'pooled' or not self.method.get('use_online', True)):
            for info in self._list(os.path.expanduser(self.cfg.demo_dir)):
                self._load_one(info, demo=True)
        if not self.method.get('use_online', True):
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

    def _pools(self):
        m = self.threshold()
        online, demo = [], []
        for key, s in self.store.items():
            if s.demo:
                demo.extend((key, int(k)) for k in s.decision.indices)
            elif accepted(s.decision, m, self.fcfg):
                online.extend((key, int(k)) for k in s.decision.indices)
        return online, demo

    def report(self) -> dict:
        m = self.threshold()
        acc = [e for e, d in self.ledger.items() if not d['reason'] and
               (not self.fcfg.use_rejection or d['ret'] >= m)]
        below = sum(1 for d in self.ledger.values() if not d['reason']) - len(acc)
        rej = dict(self.stats.episodes)
        if below:
            rej[REASON_BELOW_THRESHOLD] = below
        online, demo = self._pools()
        return {'step': self.step, 'threshold': m, 'episodes_seen': len(self.ledger),
                'accepted_episodes': len(acc), 'rejected_episodes': rej,
                'rejected_transitions': dict(self.stats.transitions),
                'accepted_samples': len(online), 'demo_samples': len(demo),
                'samples_trained': self.samples_trained, 'version': self.version}

    def telemetry(self) -> dict:
        """The numbers of the telemetry contract (hiors_trainer.telemetry.TELEMETRY_KEYS)."""
        r = self.report()
        return {'loss': self.last_loss, 'accepted': r['accepted_episodes'],
                'rejected': sum(r['rejected_episodes'].values()), 'step': self.step,
                'samples_per_s': self.samples_per_s, 'version': self.version}

    def norm_stats_from_data(self):
        from hiors_policy.processing import NormStats
        s = [x.state for x in self.store.values()]
        a = [x.action for x in self.store.values()]
        return NormStats.from_arrays(np.concatenate(s), np.concatenate(a))

    # ------------------------------------------------------------------ training
    def ready(self) -> bool:
        online, demo = self._pools()
        return len(online) + len(demo) >= max(1, self.cfg.min_accepted_samples)

    def _draw(self, n: int):
        online, demo = self._pools()
        if not online and not demo:
            raise RuntimeError('no accepted samples to train on yet')
        ratio = len(demo) / (len(demo) + len(online)) if self.cfg.demo_mix == 'pooled' else self.cfg.demo_ratio
        out = []
        for _ in range(n):
            use_demo = bool(demo) and (not online or self.rng.random() < ratio)
            pool = demo if use_demo else online
            out.append(pool[int(self.rng.integers(len(pool)))])
        return out

    def make_batch(self, draws):
        H = self.config.chunk_size
        samples, ind = [], []
        m = self.threshold()
        for key, k in draws:
            s = self.store[key]
            chunk, pad = action_chunk(self._labels(s), k, H)
            samples.append({'images': {c: v[k] for c, v in s.images.items()}, 'state': s.state[k],
                            'prompt': s.prompt, 'action': chunk, 'action_is_pad': pad})
            ind.append(1.0 if s.demo else float(accepted(s.decision, m, self.fcfg)))
        batch = self.processor.prepare_batch(samples)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        return batch, torch.tensor(ind, device=self.device)

    def _labels(self, s: '_Stored') -> np.ndarray:
        """Per-step label rows: label k = the executed command at k, or the state measured at k+1."""
        if self.cfg.label_source == 'measured':
            return np.concatenate([s.state[1:], s.state[-1:]], axis=0)
        return s.action

    def train_step(self) -> dict:
        if self.norm_stats is None:
            # Norm stats come from the data the first time (the checkpoint carries them after).
            from hiors_policy.processing import PolicyProcessor
            self.norm_stats = self.norm_stats_from_data()
            self.processor = PolicyProcessor(self.config, self.norm_stats)
        o = self.opt_cfg
        lr = cosine_lr(self.step, o['lr'], o['end_lr'], o['warmup_steps'], o['decay_steps'])
        for g in self.optimizer.param_groups:
            g['lr'] = lr
        batch, ind = self.make_batch(self._draw(o['batch_size']))
        loss = self.loss_module(batch, ind)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.loss_module.parameters(), o['grad_clip'])
        if hasattr(gnorm, 'full_tensor'):
            gnorm = gnorm.full_tensor()
        if not (torch.isfinite(loss) and torch.isfinite(gnorm)):
            # Skip the update (weights stay finite); give up only if it keeps happening.
            self.nonfinite_steps += 1
            log.warning('non-finite loss/gradient at step %d: update skipped', self.step)
            if self.nonfinite_steps >= 10:
                raise FloatingPointError(f'{self.nonfinite_steps} non-finite steps in a row at step {self.step}')
            return {'loss': float('nan'), 'lr': lr, 'grad_norm': float('nan'), 'skipped': True}
        self.nonfinite_steps = 0
        self.last_loss = loss.item()
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        self.step += 1
        self.samples_trained += o['batch_size'] * self.world_size
        return {'loss': loss.item(), 'lr': lr, 'grad_norm': gnorm.item()}

    @torch.no_grad()
    def _update_ema(self):
        # Fine-tuning from init_checkpoint: the average starts at trained weights, so no warm-up
        # (it would hand the published weights to the first, noisiest online steps).
        d = (self.cfg.ema_decay if self.cfg.init_checkpoint
             else min(self.cfg.ema_decay, (1.0 + self.step) / (10.0 + self.step)))
        for k, v in self.policy.state_dict().items():
            e = self.ema[k]
            if e.is_floating_point():
                e.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                e.copy_(v)

    # ------------------------------------------------------------------ checkpoints
    def model_state(self) -> dict:
        """Full (unsharded, CPU) weights of the policy — the EMA weights when ema_decay is on.
        Collective under FSDP: every rank calls."""
        if self.ema is not None:
            return {k: v.detach().clone() for k, v in self.ema.items()}
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
            sd = get_model_state_dict(self.loss_module,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            return {k[len('policy.'):]: v for k, v in sd.items()}
        return self.policy.state_dict()

    def training_prompt(self) -> str:
        """The instruction most of the accepted samples carry (saved in the checkpoint, so the policy
        node can warn when it runs with another one)."""
        import collections
        m = self.threshold()
        counts = collections.Counter()
        for s in self.store.values():
            if s.prompt and (s.demo or accepted(s.decision, m, self.fcfg)):
                counts[s.prompt] += len(s.decision.indices)
        return counts.most_common(1)[0][0] if counts else ''

    def save_checkpoint(self) -> dict | None:
        """Policy checkpoint + optimizer (safetensors) + state JSON, then latest.json (atomic):
        a kill -9 at any point leaves the previous complete checkpoint as 'latest'.
        Under FSDP every rank calls (weights are gathered) and rank != 0 returns None."""
        from hiors_common.atomic import atomic_path
        from hiors_policy.checkpoint import save_checkpoint
        weights = self.model_state()
        if self.rank != 0:
            return None
        if self.norm_stats is None:
            self.norm_stats = self.norm_stats_from_data() if self.store else None
        if self.norm_stats is None:
            from hiors_policy.processing import NormStats
            self.norm_stats = NormStats.identity(self.config.state_dim, self.config.action_dim)
        self.version += 1
        v = f'{self.version:06d}'
        names = {'checkpoint': f'ckpt_{v}.safetensors', 'optimizer': f'optim_{v}.safetensors',
                 'state_json': f'state_{v}.json', 'version': v}
        info = save_checkpoint(os.path.join(self.out_dir, names['checkpoint']), FullWeights(weights),
                               self.config, self.norm_stats, v, prompt=self.training_prompt())
        if self.fsdp:
            # Sharded moments are not gathered (they would need the whole model's memory twice).
            tensors, scalars = {}, {'fsdp': True, 'state': {}, 'param_groups': []}
        else:
            tensors, scalars = optimizer_to_tensors(self.optimizer)
            if self.ema is not None:
                tensors.update({RAW_PREFIX + k: v.detach().to('cpu').contiguous()
                                for k, v in self.policy.state_dict().items()})
        with atomic_path(os.path.join(self.out_dir, names['optimizer'])) as tmp:
            st_save_file(tensors, tmp)
        _atomic_json(os.path.join(self.out_dir, names['state_json']), {
            'step': self.step, 'version': self.version, 'samples_trained': self.samples_trained,
            'ledger': self.ledger, 'stats': self.stats.to_dict(), 'optimizer': scalars,
            'elapsed_s': self.elapsed_s, 'config': dataclasses.asdict(self.cfg)})
        _atomic_json(os.path.join(self.out_dir, 'latest.json'), names)
        self.saved_step = self.step
        self._prune()
        return info

    def _prune(self):
        vs = sorted({n.split('_', 1)[1].split('.')[0] for n in os.listdir(self.out_dir)
                     if n.startswith(('ckpt_', 'optim_', 'state_')) and not n.endswith('.tmp')})
        for v in vs[:-self.cfg.keep_last]:
            for p in (f'ckpt_{v}.safetensors', f'optim_{v}.safetensors', f'state_{v}.json'):
                try:
                    os.unlink(os.path.join(self.out_dir, p))
                except FileNotFoundError:
                    pass

    # ------------------------------------------------------------------ the asynchronous loop
    def run(self, max_steps: int = 0, stop=None, on_checkpoint=None, progress: bool = False,
            wake=None) -> dict:
        """Train continuously on the growing accepted set until `stop` is set (a
        threading.Event) or max_steps (0 = forever). Re-scans episodes every intake_interval_s
        or when `wake` (an Event) is set; checkpoints every K steps / T seconds and calls
        on_checkpoint(info) (rank 0 only)."""
        import threading
        stop = stop or threading.Event()
        wake = wake or threading.Event()
        tb = None
        if self.cfg.tensorboard_dir and self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(os.path.expanduser(self.cfg.tensorboard_dir))
        bar = None
        if progress and self.rank == 0:
            from tqdm import tqdm
            # In a log file (no terminal) a bar redrawn 10x a second is noise: every 30 s there.
            bar = tqdm(total=max_steps or None, initial=self.step, unit='step', dynamic_ncols=True,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0)
        last_intake = 0.0
        last_ckpt_t, last_ckpt_step = time.time(), self.step
        t_rate, n_rate, rate = time.time(), 0, 0.0
        out = {}
        try:
            while not stop.is_set() and (not max_steps or self.step < max_steps):
                now = time.time()
                if wake.is_set() or now - last_intake >= self.cfg.intake_interval_s:
                    wake.clear()
                    if self.ingest():
                        r = self.report()
                        log.info('accepted %d / %d episodes (m=%.2f), %d samples; rejected %s',
                                 r['accepted_episodes'], r['episodes_seen'], r['threshold'],
                                 r['accepted_samples'], r['rejected_episodes'])
                    last_intake = now
                if not self.ready():
                    wake.wait(min(1.0, self.cfg.intake_interval_s))
                    continue
                out = self.train_step()
                n_rate += self.opt_cfg['batch_size'] * self.world_size
                if time.time() - t_rate >= 2.0:
                    rate = n_rate / (time.time() - t_rate)
                    t_rate, n_rate = time.time(), 0
                    self.samples_per_s = rate
                out['samples_per_s'] = rate
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{out['lr']:.2e}")
                if tb is not None:
                    r = self.report()
                    tb.add_scalar('train/loss', out['loss'], self.step)
                    tb.add_scalar('train/lr', out['lr'], self.step)
                    tb.add_scalar('train/grad_norm', out['grad_norm'], self.step)
                    tb.add_scalar('train/samples_per_s', rate, self.step)
                    tb.add_scalar('data/accepted_episodes', r['accepted_episodes'], self.step)
                    tb.add_scalar('data/rejected_episodes', sum(r['rejected_episodes'].values()), self.step)
                    tb.add_scalar('data/accepted_samples', r['accepted_samples'], self.step)
                    tb.add_scalar('data/threshold', r['threshold'], self.step)
                due = (self.cfg.checkpoint_every_steps
                       and self.step - last_ckpt_step >= self.cfg.checkpoint_every_steps) \
                    or (not self.fsdp and self.cfg.checkpoint_every_s and
                        time.time() - last_ckpt_t >= self.cfg.checkpoint_every_s)   # ranks' clocks differ
                if due and (self.rank == 0 or self.fsdp):
                    info = self.save_checkpoint()
                    last_ckpt_t, last_ckpt_step = time.time(), self.step
                    if on_checkpoint is not None and info is not None:
                        on_checkpoint(info)
                elif due:
                    last_ckpt_t, last_ckpt_step = time.time(), self.step
        finally:
            if bar is not None:
                bar.close()
            if tb is not None:
                tb.close()
        return out
