"""Hi-ORS training core (ROS-agnostic): the trainer's configuration, and `Trainer`, which composes
intake.py (episodes, ledger, rejection sampling), model.py (the Hi-ORS loss, DDP/FSDP),
step.py (AdamW + cosine schedule + EMA) and store.py (checkpoints with resumable optimizer state,
safetensors + JSON) and runs the training loop.

    trainer = Trainer(TrainerConfig(episode_dir=..., out_dir=...))
    trainer.resume_or_init()
    trainer.ingest()              # picks up newly finished episodes
    trainer.train_step()          # one optimizer step on the accepted set
    trainer.save_checkpoint()     # -> {'path', 'sha256', 'size', 'format', 'version'}
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from hiors_policy.processing import random_shift

from .intake import Intake, Stored
from .model import build_policy, full_weights, hiors_loss, loss_module
from .sampling import WHOLE_SEGMENT, FilterConfig, ThresholdSchedule
from .step import RAW_PREFIX, Optimisation, cosine_lr, optimizer_from_tensors, optimizer_to_tensors
from .store import CheckpointStore, FullWeights, read_policy

# Other modules import these from here.
__all__ = ['LABEL_SOURCES', 'METHODS', 'PROFILES', 'RAW_PREFIX', 'FullWeights', 'Trainer', 'TrainerConfig',
           'cosine_lr', 'hiors_loss', 'optimizer_from_tensors', 'optimizer_to_tensors']

log = logging.getLogger('hiors_trainer')

# Optimizer profiles. 'pi0' = the paper's / openpi's values; 'cpu' = the tiny CPU model, which
# needs a far higher LR to learn anything within minutes.
PROFILES = {
    'pi0': dict(lr=2.5e-5, end_lr=2.5e-6, warmup_steps=100, decay_steps=500, betas=(0.9, 0.95),
                weight_decay=1e-10, grad_clip=1.0, batch_size=32),
    'cpu': dict(lr=1e-3, end_lr=1e-4, warmup_steps=20, decay_steps=2000, betas=(0.9, 0.95),
                weight_decay=1e-10, grad_clip=1.0, batch_size=8),
}

LABEL_SOURCES = ('executed', 'measured', 'measured_arm')     # TrainerConfig.label_source

# Baselines / ablations selected by config ('method').
METHODS = {
    'hiors': {},
    'bc': dict(use_online=False),                                        # demonstrations only
    'hg_dagger': dict(use_rejection=False, human_steps='only'),          # all intervention data
    'hiors_no_human': dict(human_steps='none'),                          # no human correction
    'hiors_human_only': dict(human_steps='only'),                        # successful episodes' human steps
    'hiors_fixed_threshold': dict(fixed_threshold=True),                 # no rising schedule
    'hiors_no_filters': dict(use_filters=False),                         # no short/no-op filters
    'hiors_fixed_frequency': dict(fixed_frequency=True),                 # human steps at the replan
}                                                                        # stride too (not dense)


@dataclass
class TrainerConfig:
    episode_dir: str = '~/.hiors/episodes'   # the recorder's episode_dir: the online episodes trained on
    demo_dir: str = ''                   # initial demonstrations (mixed in at demo_ratio)
    # checkpoint sets (policy, optimizer, state) and latest.json; a restart resumes from it
    out_dir: str = '~/.hiors/trainer'
    # a METHODS key: hiors | bc | hg_dagger | hiors_no_human | hiors_human_only |
    # hiors_fixed_threshold | hiors_no_filters | hiors_fixed_frequency
    method: str = 'hiors'
    # a PROFILES key: 'pi0' = the paper's values (AdamW 2.5e-5, betas (0.9, 0.95), cosine 100
    # warm-up / 500 decay to 2.5e-6, clip 1.0); 'cpu' = the tiny CPU model's
    profile: str = 'cpu'
    # model preset of a fresh start (random init): tiny | small | pi0; a resume from out_dir or an
    # init_checkpoint keeps that checkpoint's config
    policy_preset: str = 'tiny'
    init_checkpoint: str = ''            # base policy to start from (e.g. train_offline's output)
    # Rejection sampling.
    thresholds: list[float] = field(default_factory=lambda: [1.0])   # rejection thresholds m1 <= m2 <= ...
    # episode counts (or seconds since training started) where the next threshold starts; one
    # fewer than thresholds
    threshold_boundaries: list[float] = field(default_factory=list)
    threshold_unit: str = 'episodes'     # of threshold_boundaries: 'episodes' | 'seconds'
    min_steps: int = 2                   # episodes of <= this many steps are dropped (short-episode filter; paper: 2)
    # a step whose largest joint change |state[k+1] - state[k]| (rad, gripper m) is below this is a
    # no-op and not sampled (no-op filter)
    noop_threshold: float = 1e-3
    replan_stride: int = 0               # autonomous samples every k steps; 0 = the policy's n_action_steps
    # Autonomous steps before a human takeover that are not trained on (the human judged them
    # wrong; see sampling.FilterConfig). WHOLE_SEGMENT (-1) = the whole autonomous segment the
    # takeover ended: the policy's own steps are cloned only where they ran on to the episode's
    # success (bench_learning, 10-demo base, seed 0: 57% alone at 3000 frames with the chunk
    # length (10), 68% with 40, 72% with the whole segment); N = the last N steps; 0 = keep all (paper).
    pre_takeover_steps: int = WHOLE_SEGMENT
    demo_ratio: float = 0.0              # fraction of each batch from demo_dir (if any), with demo_mix 'ratio'
    # How demonstrations and online samples share a batch: 'ratio' = demo_ratio of it from the
    # demos, whatever the online buffer's size; 'pooled' = uniform over demos and accepted online
    # samples together, so the online share grows with the data (a few online episodes early on
    # are not trained on hundreds of times over, which makes the policy overfit to them).
    demo_mix: str = 'ratio'
    # Sampling weight of the policy's own (autonomous) steps of accepted episodes relative to a
    # human-commanded step or a demonstration step (1 = the paper: only the varied-frequency
    # stride thins them). Below 1 the person's corrections and the demos make more of each batch
    # (bench_learning, seed 0, 0.25 at 2000 frames: 72% -> 85% alone with true object poses in the
    # state, but 85% -> 60% for the image policy, whose vision needs those frames: BENCHMARKS.md).
    autonomous_weight: float = 1.0
    rate_hz: float = 0.0                 # 0 = one step per executed action
    # Chunk labels: 'executed' = the commands the mux sent (human corrections included);
    # 'measured' = the joint states the robot reached on the following steps (the official
    # Hi-ORS code's choice; on a position-controlled gripper closed on an object the measured
    # opening is the object's width, not the squeezing command); 'measured_arm' = the arm joints
    # reached and the gripper command sent (a target held against a blocked hand is not learnt,
    # the squeeze is; measured below 'executed' online: BENCHMARKS.md, session 33).
    label_source: str = 'executed'
    # Optimisation (0 = take the profile's value).
    lr: float = 0.0                      # AdamW peak learning rate; 0 = the profile's
    end_lr: float = 0.0                  # learning rate the cosine decay ends at (and stays at); 0 = the profile's
    warmup_steps: int = 0                # steps of linear warm-up to lr; 0 = the profile's
    decay_steps: int = 0                 # steps of cosine decay from lr to end_lr after the warm-up; 0 = the profile's
    grad_clip: float = 0.0               # max gradient L2 norm (clip_grad_norm_); 0 = the profile's
    batch_size: int = 0                  # samples per optimizer step, per process; 0 = the profile's
    # Exponential moving average of the weights (0 = off). Published checkpoints and
    # model_state() carry the average; training continues on the raw weights. The decay warms up
    # as min(ema_decay, (1 + step) / (10 + step)) so early averages are not stuck at a random
    # init; from an init_checkpoint it is ema_decay from the first step.
    ema_decay: float = 0.0
    # Flow-matching draws (noise, time) per observation and step; the observation is encoded
    # once, so N draws cost far less than N times the step (see Pi0Policy.compute_loss).
    noise_samples: int = 1
    # Random-shift augmentation of the training images: each camera image (at the policy's
    # image_size) is edge-padded by this many pixels and cropped back at a random offset
    # (processing.random_shift); 0 = off.
    image_shift_px: int = 0
    # Object-pose estimator file (hiors_policy.object_pose) of a policy whose state holds the
    # joints + the estimated peg and hole: episodes recorded with the joints only get its reading
    # of every recorded frame appended, as the policy node appended it when acting. '' = none.
    object_pose_estimator: str = ''
    # Gaussian noise (std) added to the object poses of every training sample, a policy whose
    # state holds the joints + the peg and hole (x, y in m, yaw in rad; OBJECT_POSE_NAMES): an
    # estimator's reading is off by about a millimetre and differs frame to frame, and a few
    # hundred online frames trained thousands of times over are otherwise memorised by that
    # noise (the joints get none: they are measured). bench_learning, estimated poses, human steps
    # only, 1 mm / 0.02 rad: 78% / 65% alone at 1000 frames (seeds 0 / 1) vs 92% / 83% without.
    object_pose_noise_m: float = 0.0     # std on the peg and hole x, y (m); 0 = off
    object_pose_noise_rad: float = 0.0   # std on the peg and hole yaws (rad); 0 = off
    seed: int = 0                        # torch (init weights, flow-matching noise) and batch-draw RNG seed
    device: str = 'cpu'                  # 'cpu', 'cuda', 'cuda:N' or 'auto' (cuda if available)
    num_threads: int = 1                 # torch CPU threads (at least 1)
    parallel: str = 'ddp'                # with torchrun: 'ddp', or 'fsdp' (sharded params/optimizer)
    # Checkpoints.
    checkpoint_every_steps: int = 50     # save (and publish) a checkpoint every this many steps; 0 = off
    checkpoint_every_s: float = 0.0      # also save one every this many seconds (not under FSDP); 0 = off
    keep_last: int = 3                   # checkpoint sets kept in out_dir (older ones deleted); >= 1
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
        if not 0.0 < self.autonomous_weight <= 1.0:
            raise ValueError('autonomous_weight must be in (0, 1]')
        if self.demo_mix not in ('ratio', 'pooled'):
            raise ValueError(f"demo_mix must be 'ratio' or 'pooled', got {self.demo_mix!r}")
        if self.parallel not in ('ddp', 'fsdp'):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if self.keep_last < 1:
            raise ValueError('keep_last must be >= 1')
        if self.noise_samples < 1:
            raise ValueError('noise_samples must be >= 1')
        if self.image_shift_px < 0:
            raise ValueError('image_shift_px must be >= 0')
        if self.object_pose_noise_m < 0 or self.object_pose_noise_rad < 0:
            raise ValueError('object_pose_noise_m and object_pose_noise_rad must be >= 0')
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f'label_source must be one of {LABEL_SOURCES}, got {self.label_source!r}')
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError('ema_decay must be in [0, 1)')
        if self.ema_decay and self.parallel == 'fsdp':
            raise ValueError('ema_decay is not supported with parallel=fsdp (sharded weights)')

    def filter_config(self, policy_stride: int = 1) -> FilterConfig:
        """`policy_stride` (the policy's n_action_steps) stands in for replan_stride 0."""
        m = METHODS[self.method]
        stride = self.replan_stride or policy_stride
        return FilterConfig(min_steps=self.min_steps, noop_threshold=self.noop_threshold,
                            use_filters=m.get('use_filters', True),
                            use_rejection=m.get('use_rejection', True),
                            human_steps=m.get('human_steps', 'all'), replan_stride=stride,
                            human_stride=stride if m.get('fixed_frequency') else 1,
                            pre_takeover_steps=self.pre_takeover_steps)

    def schedule(self) -> ThresholdSchedule:
        if METHODS[self.method].get('fixed_threshold'):
            return ThresholdSchedule([self.thresholds[0]], [], self.threshold_unit)
        return ThresholdSchedule(list(self.thresholds), list(self.threshold_boundaries), self.threshold_unit)


def _part(part: str, name: str) -> property:
    """Trainer.<name> reads <part>.<name> (the attribute lives in the part that owns it)."""
    return property(lambda self: getattr(getattr(self, part), name))


class Trainer:
    """The Hi-ORS learner, composed of its parts: `intake` (episodes, ledger, accepted samples,
    rejection counts), the model (policy + DDP/FSDP wrapper, see model.py), `optim` (AdamW,
    cosine LR, EMA, one update) and `ckpts` (checkpoint files); it owns the step counters and
    the sampling RNG, and runs the loop."""

    def __init__(self, cfg: TrainerConfig, loader=None, lister=None, success_classifier=None,
                 rank: int = 0, world_size: int = 1):
        cfg.validate()
        self.cfg = cfg
        self.opt_cfg = cfg.resolved()
        self.rank, self.world_size = rank, world_size
        self.fsdp = world_size > 1 and cfg.parallel == 'fsdp'
        self.intake = Intake(cfg, cfg.filter_config(), cfg.schedule(), METHODS[cfg.method].get('use_online', True),
                             lister, loader, success_classifier)
        self.out_dir = os.path.expanduser(cfg.out_dir)
        self.ckpts = CheckpointStore(self.out_dir, cfg.keep_last)
        torch.set_num_threads(max(1, cfg.num_threads))
        self.optim = Optimisation(self.opt_cfg, cfg.ema_decay, ema_warmup=not cfg.init_checkpoint)
        self.step = 0
        self.samples_trained = 0
        self.saved_step = 0
        self.version = 0
        self.rng = np.random.default_rng(cfg.seed + 1000 * rank)
        self.policy = None
        self.state_noise_std = None       # set by _build (object_pose_noise_*)
        self.samples_per_s = 0.0

    ledger = _part('intake', 'ledger')
    store = _part('intake', 'store')
    stats = _part('intake', 'stats')
    fcfg = _part('intake', 'fcfg')
    elapsed_s = _part('intake', 'elapsed_s')
    optimizer = _part('optim', 'optimizer')
    ema = _part('optim', 'ema')
    last_loss = _part('optim', 'last_loss')
    nonfinite_steps = _part('optim', 'nonfinite_steps')

    # ------------------------------------------------------------------ model
    def _build(self, state_dict=None, config=None, norm_stats=None):
        from hiors_policy.config import make_config
        from hiors_policy.device import resolve_device
        from hiors_policy.processing import PolicyProcessor
        self.device = resolve_device(self.cfg.device)
        torch.manual_seed(self.cfg.seed)
        self.config = config or make_config(self.cfg.policy_preset)
        if not self.cfg.replan_stride:
            # Varied frequency: autonomous segments are sampled where the policy re-planned.
            self.intake.fcfg = self.cfg.filter_config(policy_stride=self.config.n_action_steps)
        self.policy = build_policy(self.config, self.device, state_dict)
        self.intake.cameras = self.config.camera_names
        if self.cfg.object_pose_estimator:
            from hiors_policy.object_pose import OBJECT_POSE_NAMES, ObjectPoseEstimator
            est = ObjectPoseEstimator.load(os.path.expanduser(self.cfg.object_pose_estimator))
            if self.config.state_dim != est.config.joint_dim + len(OBJECT_POSE_NAMES):
                raise ValueError(f'object_pose_estimator: the policy state_dim {self.config.state_dim} is not '
                                 f'{est.config.joint_dim} joints + {len(OBJECT_POSE_NAMES)} object poses')
            self.intake.estimator = est
        self.state_noise_std = self._object_pose_noise()
        self.norm_stats = norm_stats
        self.processor = PolicyProcessor(self.config, norm_stats)
        if self.intake.store and type(self.intake.space) is not type(self.processor.space):
            raise ValueError(f'the policy acts in {self.config.action_space!r} space, '
                             'unlike the episodes already loaded')
        self.intake.space = self.processor.space
        self.loss_module = loss_module(self.policy, self.device, self.cfg.noise_samples, self.world_size, self.fsdp)
        self.optim.attach(self.loss_module, self.policy)

    def _object_pose_noise(self) -> np.ndarray | None:
        """Per-state-dim std of the training noise (object_pose_noise_*), or None when off."""
        if not (self.cfg.object_pose_noise_m or self.cfg.object_pose_noise_rad):
            return None
        from hiors_common.robot import JOINT_NAMES
        from hiors_policy.object_pose import OBJECT_POSE_NAMES
        # Only a state of exactly joints + poses: any other layout would put the noise on joints.
        if self.config.state_dim != len(JOINT_NAMES) + len(OBJECT_POSE_NAMES):
            raise ValueError(f'object_pose_noise: the policy state ({self.config.state_dim} dims) holds no '
                             f'object poses ({len(JOINT_NAMES)} joints + {len(OBJECT_POSE_NAMES)})')
        obj = [self.cfg.object_pose_noise_rad if n.endswith('_yaw') else self.cfg.object_pose_noise_m
               for n in OBJECT_POSE_NAMES]
        return np.array([0.0] * len(JOINT_NAMES) + obj, dtype=np.float32)

    def resume_or_init(self, config=None) -> bool:
        """Resume model, optimizer, step and the episode ledger from the last checkpoint in
        out_dir; else start from init_checkpoint or random init (from `config`, a PolicyConfig,
        default: the policy_preset's). True if resumed."""
        names = self.ckpts.latest()
        if names is not None:
            ckpt = self.ckpts.path(names['checkpoint'])
            self._build(*read_policy(ckpt))
            st = self.ckpts.read_state(names)
            if not st['optimizer'].get('fsdp') and not self.fsdp:
                self.optim.load_state(self.ckpts.read_optimizer(names), st['optimizer'])
            else:
                log.warning('FSDP run: AdamW moments restart from zero on resume (weights resume)')
            self.step, self.version = st['step'], st['version']
            self.saved_step = self.step
            self.samples_trained = st['samples_trained']
            self.intake.restore(st['ledger'], st['stats'], st.get('elapsed_s', 0.0))
            self.rng = np.random.default_rng(self.cfg.seed + 1000 * self.rank + self.step)
            log.info('resumed from %s at step %d (%d episodes in the ledger)', ckpt, self.step, len(self.ledger))
            return True
        if self.cfg.init_checkpoint:
            self._build(*read_policy(self.cfg.init_checkpoint))
        else:
            self._build(config=config)
        return False

    # ------------------------------------------------------------------ intake
    def threshold(self) -> float:
        return self.intake.threshold()

    def ingest(self) -> int:
        """Read newly finished episodes (and, first time, the demos). Returns how many new ones."""
        return self.intake.ingest()

    def report(self) -> dict:
        return {'step': self.step, **self.intake.summary(),
                'samples_trained': self.samples_trained, 'version': self.version}

    def telemetry(self) -> dict:
        """The numbers of the telemetry contract (hiors_trainer.telemetry.TELEMETRY_KEYS)."""
        r = self.report()
        return {'loss': self.last_loss, 'accepted': r['accepted_episodes'],
                'rejected': sum(r['rejected_episodes'].values()), 'step': self.step,
                'samples_per_s': self.samples_per_s, 'version': self.version, 'training': int(self.ready())}

    def norm_stats_from_data(self):
        return self.intake.norm_stats()

    # ------------------------------------------------------------------ training
    def ready(self) -> bool:
        return self.intake.ready(self.cfg.min_accepted_samples)

    def _draw(self, n: int):
        return self.intake.draw(n, self.rng)

    def _labels(self, s: Stored) -> np.ndarray:
        return self.intake.labels(s)

    def make_batch(self, draws):
        samples, ind = self.intake.samples(draws, self.config.chunk_size)
        if self.state_noise_std is not None:
            for s in samples:
                s['state'] = s['state'] + self.state_noise_std * self.rng.standard_normal(len(s['state']))
        batch = self.processor.prepare_batch(samples)
        batch['images'] = random_shift(batch['images'], self.cfg.image_shift_px, self.rng)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        return batch, torch.tensor(ind, device=self.device)

    def train_step(self) -> dict:
        if self.norm_stats is None:
            # Norm stats come from the data the first time (the checkpoint carries them after).
            from hiors_policy.processing import PolicyProcessor
            self.norm_stats = self.norm_stats_from_data()
            self.processor = PolicyProcessor(self.config, self.norm_stats)
        lr = self.optim.set_lr(self.step)
        batch, ind = self.make_batch(self._draw(self.opt_cfg['batch_size']))
        out = self.optim.update(batch, ind, self.step, lr)
        if not out.get('skipped'):
            self.step += 1
            self.samples_trained += self.opt_cfg['batch_size'] * self.world_size
        return out

    # ------------------------------------------------------------------ checkpoints
    def model_state(self) -> dict:
        """Full (unsharded, CPU) weights of the policy — the EMA weights when ema_decay is on.
        Collective under FSDP: every rank calls."""
        if self.optim.ema is not None:
            return self.optim.ema_state()
        return full_weights(self.loss_module, self.policy, self.fsdp)

    def training_prompt(self) -> str:
        """The instruction most of the accepted samples carry (saved in the checkpoint, so the policy
        node can warn when it runs with another one)."""
        return self.intake.training_prompt()

    def save_checkpoint(self) -> dict | None:
        """Policy checkpoint + optimizer (safetensors) + state JSON, then latest.json (atomic):
        a kill -9 at any point leaves the previous complete checkpoint as 'latest'.
        Under FSDP every rank calls (weights are gathered) and rank != 0 returns None."""
        weights = self.model_state()
        if self.rank != 0:
            return None
        if self.norm_stats is None:
            self.norm_stats = self.norm_stats_from_data() if self.store else None
        if self.norm_stats is None:
            from hiors_policy.processing import NormStats
            self.norm_stats = NormStats.identity(self.config.state_dim, self.config.action_dim)
        self.version += 1
        prompt = self.training_prompt()
        tensors, scalars = self.optim.state(sharded=self.fsdp)
        state = {'step': self.step, 'version': self.version, 'samples_trained': self.samples_trained,
                 'ledger': self.ledger, 'stats': self.stats.to_dict(), 'optimizer': scalars,
                 'elapsed_s': self.elapsed_s, 'config': dataclasses.asdict(self.cfg)}
        info = self.ckpts.save(self.version, weights, self.config, self.norm_stats, prompt, tensors, state)
        self.saved_step = self.step
        self.ckpts.prune()
        return info

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
