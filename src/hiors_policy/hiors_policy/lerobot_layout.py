"""Map between this model's state dict and the LeRobot / openpi pi0 checkpoint layout.

LeRobot pi0 checkpoints are a directory with model.safetensors + config.json. Key names (current
LeRobot, transformers >= 4.52 PaliGemma layout; the leading 'model.' is optional, openpi's
PyTorch export omits it):
  model.paligemma_with_expert.paligemma.model.vision_tower.vision_model.<siglip...>
  model.paligemma_with_expert.paligemma.model.multi_modal_projector.linear.{weight,bias}
  model.paligemma_with_expert.paligemma.model.language_model.{embed_tokens,layers.N...,norm}
  model.paligemma_with_expert.paligemma.lm_head.weight            (tied to embed_tokens)
  model.paligemma_with_expert.gemma_expert.model.{layers.N...,norm}
  model.paligemma_with_expert.gemma_expert.lm_head.weight         (unused by pi0)
  model.{state_proj,action_in_proj,action_out_proj,action_time_mlp_in,action_time_mlp_out}.*
Older LeRobot files (transformers < 4.52) use paligemma.vision_tower / paligemma.multi_modal_projector
/ paligemma.language_model.model.* / paligemma.language_model.lm_head; import accepts both.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hiors_common.atomic import atomic_path, atomic_write_json

from .checkpoint import CheckpointError, check_state_dict
from .config import PolicyConfig, make_config
from .modeling import Pi0Policy
from .processing import NormStats

PWE = 'model.paligemma_with_expert.'
# (our prefix, LeRobot prefix) — first match wins, most specific first.
_PREFIXES = (
    ('vision.', PWE + 'paligemma.model.vision_tower.vision_model.'),
    ('projector.', PWE + 'paligemma.model.multi_modal_projector.linear.'),
    ('lm.', PWE + 'paligemma.model.language_model.'),
    ('expert.', PWE + 'gemma_expert.model.'),
    ('state_proj.', 'model.state_proj.'),
    ('action_in_proj.', 'model.action_in_proj.'),
    ('action_out_proj.', 'model.action_out_proj.'),
    ('action_time_mlp_in.', 'model.action_time_mlp_in.'),
    ('action_time_mlp_out.', 'model.action_time_mlp_out.'),
)
PALI_LM_HEAD = PWE + 'paligemma.lm_head.weight'
EXPERT_LM_HEAD = PWE + 'gemma_expert.lm_head.weight'
# Older (transformers < 4.52) PaliGemma key prefixes -> current ones.
_LEGACY = (
    (PWE + 'paligemma.vision_tower.', PWE + 'paligemma.model.vision_tower.'),
    (PWE + 'paligemma.multi_modal_projector.', PWE + 'paligemma.model.multi_modal_projector.'),
    (PWE + 'paligemma.language_model.model.', PWE + 'paligemma.model.language_model.'),
    (PWE + 'paligemma.language_model.lm_head.', PWE + 'paligemma.lm_head.'),
)
# Upstream pi0 sizes by LeRobot/openpi variant name.
_VARIANTS = {
    'gemma_2b': dict(lm_width=2048, lm_depth=18, lm_mlp_dim=16384, num_heads=8, num_kv_heads=1, head_dim=256),
    'gemma_300m': dict(expert_width=1024, expert_mlp_dim=4096),
}


def to_lerobot_key(key: str) -> str:
    for ours, theirs in _PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise KeyError(f'no LeRobot name for parameter {key!r}')


def normalize_lerobot_key(key: str) -> str:
    """Add the optional 'model.' prefix and rewrite legacy PaliGemma prefixes."""
    if not key.startswith('model.'):
        key = 'model.' + key
    for old, new in _LEGACY:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def from_lerobot_key(key: str) -> str | None:
    """LeRobot key -> our key; None for known keys we do not use (lm heads)."""
    key = normalize_lerobot_key(key)
    if key in (PALI_LM_HEAD, EXPERT_LM_HEAD):
        return None
    for ours, theirs in _PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    raise KeyError(key)


def to_lerobot_state_dict(policy: Pi0Policy, include_lm_head: bool = True) -> dict[str, torch.Tensor]:
    """Our weights under LeRobot names. include_lm_head writes paligemma.lm_head.weight (a copy of
    the tied embedding, as LeRobot's own files carry it)."""
    out = {to_lerobot_key(k): v.detach().to('cpu').contiguous().clone() for k, v in policy.state_dict().items()}
    if include_lm_head:
        out[PALI_LM_HEAD] = policy.lm.embed_tokens.weight.detach().to('cpu').contiguous().clone()
    return out


def from_lerobot_state_dict(sd: dict[str, torch.Tensor], what: str = 'LeRobot checkpoint') -> dict[str, torch.Tensor]:
    """LeRobot names -> ours. Unknown keys raise; lm heads are dropped (the paligemma lm_head is
    used as the token embedding when the file has no embed_tokens, as LeRobot does)."""
    out, unknown = {}, []
    pali_head = None
    for k, v in sd.items():
        try:
            ours = from_lerobot_key(k)
        except KeyError:
            unknown.append(k)
            continue
        if ours is None:
            if normalize_lerobot_key(k) == PALI_LM_HEAD:
                pali_head = v
            continue
        if ours in out:
            raise CheckpointError(f'{what}: key {k!r} maps to {ours!r} twice (mixed layouts?)')
        out[ours] = v
    if unknown:
        raise CheckpointError(f'{what}: keys not in the pi0 layout: {sorted(unknown)[:8]}'
                              + (f' ... {len(unknown) - 8} more' if len(unknown) > 8 else ''))
    if 'lm.embed_tokens.weight' not in out and pali_head is not None:
        out['lm.embed_tokens.weight'] = pali_head
    return out


def _config_json(config: PolicyConfig, norm_stats: NormStats | None) -> dict:
    d = {
        'type': 'pi0',
        'chunk_size': config.chunk_size,
        'n_action_steps': config.n_action_steps,
        'max_state_dim': config.max_state_dim,
        'max_action_dim': config.max_action_dim,
        'num_inference_steps': config.num_inference_steps,
        'tokenizer_max_length': config.tokenizer_max_length,
        'image_resolution': [config.image_size, config.image_size],
        'time_sampling_beta_alpha': config.time_beta_alpha,
        'time_sampling_beta_beta': config.time_beta_beta,
        'min_period': config.time_min_period,
        'max_period': config.time_max_period,
        'dtype': config.dtype,
        'hiors_config': config.to_dict(),     # exact architecture for a lossless round trip
    }
    if config.name == 'pi0':
        d.update(paligemma_variant='gemma_2b', action_expert_variant='gemma_300m')
    if norm_stats is not None:
        d['hiors_norm_stats'] = norm_stats.to_dict()
    return d


def export_lerobot(policy: Pi0Policy, out_dir, norm_stats: NormStats | None = None,
                   include_lm_head: bool = True) -> Path:
    """Write <out_dir>/model.safetensors + config.json in the LeRobot pi0 layout."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = to_lerobot_state_dict(policy, include_lm_head)
    with atomic_path(out / 'model.safetensors') as tmp:
        save_file(sd, tmp, metadata={'format': 'pt'})
    atomic_write_json(out / 'config.json', _config_json(policy.config, norm_stats), sort_keys=False)
    return out


def config_from_lerobot(d: dict, **overrides) -> PolicyConfig:
    """PolicyConfig for a LeRobot config.json: exact when written by export_lerobot, otherwise
    the upstream pi0 sizes with the I/O fields (chunk, dims, steps, tokens) from the file."""
    if not isinstance(d, dict):
        raise CheckpointError('config.json is not a JSON object')
    if d.get('type', 'pi0') != 'pi0':
        raise CheckpointError(f"config.json type {d.get('type')!r} is not 'pi0'")
    if 'hiors_config' in d:
        cfg = dict(d['hiors_config'])
        cfg.update(overrides)
        try:
            return PolicyConfig.from_dict(cfg)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f'config.json hiors_config: {e}') from None
    for key, want in (('paligemma_variant', 'gemma_2b'), ('action_expert_variant', 'gemma_300m')):
        if d.get(key, want) != want:
            raise CheckpointError(f'config.json {key}={d[key]!r}: only {want!r} is supported for upstream pi0')
    kw = {}
    for src, dst in (('chunk_size', 'chunk_size'), ('n_action_steps', 'n_action_steps'),
                     ('max_state_dim', 'max_state_dim'), ('max_action_dim', 'max_action_dim'),
                     ('tokenizer_max_length', 'tokenizer_max_length'),
                     ('num_inference_steps', 'num_inference_steps'), ('num_steps', 'num_inference_steps')):
        if src in d:
            kw[dst] = d[src]
    res = d.get('image_resolution') or d.get('resize_imgs_with_padding')
    if res:
        if res[0] != res[1]:
            raise CheckpointError(f'non-square image_resolution {res} is not supported')
        kw['image_size'] = int(res[0])
    kw.update(overrides)
    try:
        return make_config('pi0', **kw)
    except ValueError as e:
        raise CheckpointError(f'config.json: {e}') from None


def import_lerobot(src_dir, device: str | torch.device = 'cpu', config: PolicyConfig | None = None,
                   **config_overrides):
    """Load a LeRobot-layout pi0 directory -> (policy, config, norm_stats or None). Raises
    CheckpointError on missing/extra keys or shape mismatch, before any weight is copied."""
    d = Path(src_dir)
    st = d / 'model.safetensors'
    if not st.is_file():
        raise CheckpointError(f'{d}: no model.safetensors')
    norm_stats = None
    if config is None:
        cj = d / 'config.json'
        if not cj.is_file():
            raise CheckpointError(f'{d}: no config.json (pass config= explicitly)')
        try:
            cd = json.loads(cj.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f'{cj}: invalid JSON ({e})') from None
        config = config_from_lerobot(cd, **config_overrides)
        if isinstance(cd, dict) and 'hiors_norm_stats' in cd:
            try:
                norm_stats = NormStats.from_dict(cd['hiors_norm_stats'])
            except ValueError as e:
                raise CheckpointError(f'{cj}: bad hiors_norm_stats: {e}') from None
    try:
        raw = load_file(str(st), device='cpu')
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f'{st}: cannot read: {e}') from None
    sd = from_lerobot_state_dict(raw, str(st))
    with torch.device('meta'):
        ref = Pi0Policy(config).state_dict()
    check_state_dict(ref, sd, str(st))
    policy = Pi0Policy.empty(config, device=device)
    policy.load_state_dict(sd, strict=True)
    policy.eval()
    return policy, config, norm_stats


__all__ = ['to_lerobot_key', 'from_lerobot_key', 'to_lerobot_state_dict', 'from_lerobot_state_dict',
           'export_lerobot', 'import_lerobot', 'config_from_lerobot']
