"""Object-pose estimator: the peg's and the hole's (x, y, yaw) on the table, from the policy's
cameras and the arm's joints.

Perception as a module of its own, the way a real cell uses a pose estimator trained on
synthetic scenes: it learns from simulated frames labelled with the true poses
(bench/train_pose_estimator.py), is then frozen, and the policy reads its output as part of the
state (joints + OBJECT_POSE_NAMES) where the upper-bound runs read the true poses
(hiors.sync_loop.privileged_state). Each camera goes through the policy's keypoint tower (conv +
GroupNorm + spatial softmax: sub-cell image coordinates); an MLP maps the keypoints of all cameras
and the joints (they place the wrist camera) to the six numbers. One file: safetensors weights,
the config as JSON metadata, never pickle.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from hiors_common.atomic import atomic_path

from .config import make_config
from .keypoints import KeypointEncoder
from .processing import PolicyProcessor

FORMAT = 'hiors-object-pose-v1'
OBJECT_POSE_NAMES = ('peg_x', 'peg_y', 'peg_yaw', 'hole_x', 'hole_y', 'hole_yaw')


@dataclass
class PoseEstimatorConfig:
    camera_names: tuple = ('front', 'wrist')
    image_size: int = 96            # square input per camera (resized with padding, as the policy's)
    keypoints: int = 32             # spatial-softmax keypoints per camera
    conv_width: int = 32            # conv channels of the first stage (doubled after the second stride)
    token_width: int = 32           # width of each keypoint token fed to the MLP
    hidden: int = 256               # MLP hidden width
    joint_dim: int = 7
    # Normalisation of the inputs' joints and the output poses (training-set mean / std).
    joint_mean: list = field(default_factory=lambda: [0.0] * 7)
    joint_std: list = field(default_factory=lambda: [1.0] * 7)
    pose_mean: list = field(default_factory=lambda: [0.0] * len(OBJECT_POSE_NAMES))
    pose_std: list = field(default_factory=lambda: [1.0] * len(OBJECT_POSE_NAMES))

    def __post_init__(self):
        self.camera_names = tuple(self.camera_names)

    def policy_config(self):
        """The PolicyConfig whose keypoint tower and image processing the estimator shares."""
        return make_config('tiny', camera_names=self.camera_names, image_size=self.image_size,
                           vision_keypoints=self.keypoints, vision_width=self.conv_width)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, s: str) -> 'PoseEstimatorConfig':
        d = json.loads(s)
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f'unknown pose estimator config keys: {unknown}')
        return cls(**d)


class ObjectPoseEstimator(nn.Module):
    def __init__(self, config: PoseEstimatorConfig):
        super().__init__()
        self.config = config
        pc = config.policy_config()
        self.processor = PolicyProcessor(pc)
        self.encoders = nn.ModuleList(KeypointEncoder(pc, config.token_width) for _ in config.camera_names)
        n_in = len(config.camera_names) * (config.keypoints + 1) * config.token_width + config.joint_dim
        self.head = nn.Sequential(nn.Linear(n_in, config.hidden), nn.GELU(),
                                  nn.Linear(config.hidden, config.hidden), nn.GELU(),
                                  nn.Linear(config.hidden, len(OBJECT_POSE_NAMES)))
        for name in ('joint_mean', 'joint_std', 'pose_mean', 'pose_std'):
            self.register_buffer(name, torch.tensor(getattr(config, name), dtype=torch.float32))

    def forward_normalized(self, images: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """images (B, n_cam, 3, S, S) in [-1, 1], joints (B, joint_dim) raw -> normalised poses."""
        tokens = [enc(images[:, i]).flatten(1) for i, enc in enumerate(self.encoders)]
        q = (joints - self.joint_mean) / self.joint_std
        return self.head(torch.cat(tokens + [q], dim=1))

    def forward(self, images: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(images, joints) * self.pose_std + self.pose_mean

    def image_batch(self, frames: np.ndarray) -> torch.Tensor:
        """(B, n_cam, S', S', 3) uint8 camera frames -> (B, n_cam, 3, S, S) float in [-1, 1], through
        the policy's image processing (frames already at image_size are only scaled)."""
        return torch.from_numpy(np.stack([
            np.stack([self.processor.image_array(f) for f in cams]) for cams in frames]))

    @torch.no_grad()
    def estimate(self, images: dict, joints) -> np.ndarray:
        """camera name -> (H, W, 3) uint8 frame, joints (joint_dim,) -> (6,) in OBJECT_POSE_NAMES order."""
        missing = [c for c in self.config.camera_names if images.get(c) is None]
        if missing:
            raise ValueError(f'pose estimator needs cameras {list(self.config.camera_names)}; missing {missing}')
        x = torch.from_numpy(self.processor.images_array(images)[0])[None]
        q = torch.as_tensor(np.asarray(joints, np.float32)[None])
        return self.eval()(x, q)[0].numpy().astype(np.float64)

    def save(self, path) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata={'format': FORMAT, 'config': self.config.to_json()})

    @classmethod
    def load(cls, path) -> 'ObjectPoseEstimator':
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
            if meta.get('format') != FORMAT:
                raise ValueError(f'{path}: not an object-pose estimator file (format {meta.get("format")!r})')
            model = cls(PoseEstimatorConfig.from_json(meta['config']))
            model.load_state_dict({k: f.get_tensor(k) for k in f.keys()}, strict=True)
        return model.eval()


def observed_state(joints, images, estimator: ObjectPoseEstimator | None = None) -> np.ndarray:
    """The policy's state of one observation: the joints, followed by the estimator's reading of
    the peg and hole when the policy was trained with one (the policy node, the lock-step engine).
    `images`: camera -> frame, or a callable returning that (called only with an estimator)."""
    q = np.asarray(joints, dtype=float).reshape(-1)
    if estimator is None:
        return q
    return np.concatenate([q, estimator.estimate(images() if callable(images) else images, q)])


@torch.no_grad()
def episode_states(joints: np.ndarray, images: dict, estimator: ObjectPoseEstimator,
                   batch_size: int = 64) -> np.ndarray:
    """observed_state over a recorded episode: joints (T, joint_dim), camera -> (T, H, W, 3) uint8
    -> (T, joint_dim + 6) float32 (the trainer reads the robot's bags, which hold the joints, so)."""
    missing = [c for c in estimator.config.camera_names if c not in images]
    if missing:
        raise ValueError(f'pose estimator needs cameras {list(estimator.config.camera_names)}; episode lacks {missing}')
    joints = np.asarray(joints, dtype=np.float32)
    out = []
    model = estimator.eval()
    for i in range(0, len(joints), batch_size):
        frames = np.stack([images[c][i:i + batch_size] for c in estimator.config.camera_names], axis=1)
        out.append(model(model.image_batch(frames), torch.from_numpy(joints[i:i + batch_size])).numpy())
    return np.concatenate([joints, np.concatenate(out).astype(np.float32)], axis=1)


def fit_pose_estimator(frames: np.ndarray, joints: np.ndarray, poses: np.ndarray,
                       config: PoseEstimatorConfig | None = None, steps: int = 4000, batch_size: int = 32,
                       lr: float = 1e-3, seed: int = 0, log=None, log_every: int = 500) -> ObjectPoseEstimator:
    """Supervised fit on labelled frames: frames (N, n_cam, S, S, 3) uint8 at the estimator's
    image_size, joints (N, joint_dim), poses (N, 6). Smooth-L1 on normalised poses, AdamW with a
    one-cycle schedule. `log(step, loss, seconds, model)` every `log_every` steps."""
    base = config or PoseEstimatorConfig()
    config = dataclasses.replace(
        base, joint_mean=joints.mean(0).tolist(), joint_std=(joints.std(0) + 1e-3).tolist(),
        pose_mean=poses.mean(0).tolist(), pose_std=(poses.std(0) + 1e-4).tolist())
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ObjectPoseEstimator(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    target = torch.from_numpy(((poses - poses.mean(0)) / np.asarray(config.pose_std)).astype(np.float32))
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(frames), batch_size)
        x = model.image_batch(frames[idx])
        q = torch.from_numpy(joints[idx].astype(np.float32))
        loss = nn.functional.smooth_l1_loss(model.forward_normalized(x, q), target[idx], beta=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (step % log_every == 0 or step == steps - 1):
            log(step, loss.item(), time.time() - t0, model)
    return model.eval()


__all__ = ['ObjectPoseEstimator', 'PoseEstimatorConfig', 'OBJECT_POSE_NAMES', 'fit_pose_estimator', 'observed_state',
           'episode_states']
