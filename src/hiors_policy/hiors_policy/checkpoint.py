"""Policy checkpoints: ONE .safetensors file = weights + metadata (never pickle).

Header metadata (all strings): format = 'hiors-safetensors-v1', config (PolicyConfig JSON),
norm_stats (NormStats JSON), version. Files are written atomically (hiors_common.atomic) so a
reader never sees a half-written checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save
from safetensors.torch import save_file as st_save_file

from hiors_common.atomic import atomic_path

from .config import PolicyConfig
from .device import resolve_device, torch_dtype
from .modeling import Pi0Policy
from .processing import NormStats

FORMAT = 'hiors-safetensors-v1'
MAX_HEADER = 100 * 1024 * 1024
# Config fields that do not change the weights: may differ between a hot-swapped checkpoint
# and the running model (vision_backbone_lr_scale: a training setting only).
RUNTIME_FIELDS = frozenset({'name', 'n_action_steps', 'num_inference_steps', 'dtype', 'tokenizer',
                            'vision_backbone_lr_scale'})


class CheckpointError(ValueError):
    """A checkpoint file is malformed or does not fit the model."""


# ---------------------------------------------------------------------------------- writing
def _tensors(policy: Pi0Policy, dtype: str | None) -> dict[str, torch.Tensor]:
    out = {}
    cast = torch_dtype(dtype) if dtype else None
    for k, v in policy.state_dict().items():
        v = v.detach()
        if cast is not None and v.is_floating_point():
            v = v.to(cast)
        out[k] = v.to('cpu').contiguous()
    return out


def _metadata(config: PolicyConfig, norm_stats: NormStats, version, prompt: str = '') -> dict[str, str]:
    if not isinstance(norm_stats, NormStats):
        raise TypeError('norm_stats must be a NormStats')
    if norm_stats.state_mean.shape[0] != config.state_dim or norm_stats.action_mean.shape[0] != config.action_dim:
        raise ValueError('norm_stats dims do not match the config')
    meta = {'format': FORMAT, 'config': config.to_json(), 'norm_stats': norm_stats.to_json(),
            'version': str(version)}
    if prompt:
        meta['prompt'] = str(prompt)    # the instruction it was trained on (the policy node compares)
    return meta


def checkpoint_bytes(policy: Pi0Policy, config: PolicyConfig, norm_stats: NormStats, version,
                     dtype: str | None = None) -> bytes:
    """The checkpoint file content in memory (for inline transport)."""
    return st_save(_tensors(policy, dtype), metadata=_metadata(config, norm_stats, version))


def save_checkpoint(path, policy: Pi0Policy, config: PolicyConfig, norm_stats: NormStats, version,
                    dtype: str | None = None, prompt: str = '') -> dict:
    """Write atomically; returns {'path', 'sha256', 'size', 'format', 'version'}.
    dtype='bfloat16' halves the file (weights are cast; exact round trip only with None)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = _metadata(config, norm_stats, version, prompt)
    h = hashlib.sha256()
    with atomic_path(path) as tmp:
        st_save_file(_tensors(policy, dtype), tmp, metadata=meta)
        with open(tmp, 'rb') as f:
            for block in iter(lambda: f.read(1 << 22), b''):
                h.update(block)
        size = os.path.getsize(tmp)
    return {'path': str(path), 'sha256': h.hexdigest(), 'size': size, 'format': FORMAT, 'version': str(version)}


# ---------------------------------------------------------------------------------- reading
def _parse_header(head: bytes, total_size: int, what: str) -> tuple[dict, dict]:
    """Validate the safetensors header; returns (metadata, tensor entries)."""
    if total_size < 8 or len(head) < 8:
        raise CheckpointError(f'{what}: not a safetensors file (only {total_size} bytes)')
    (n,) = struct.unpack('<Q', head[:8])
    if n > MAX_HEADER or 8 + n > total_size:
        raise CheckpointError(f'{what}: truncated or corrupt (header length {n}, file size {total_size})')
    if len(head) < 8 + n:
        raise CheckpointError(f'{what}: truncated header')
    try:
        header = json.loads(head[8:8 + n].decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f'{what}: header is not valid JSON ({e})') from None
    if not isinstance(header, dict):
        raise CheckpointError(f'{what}: header is not a JSON object')
    meta = header.pop('__metadata__', None)
    if not isinstance(meta, dict):
        raise CheckpointError(f'{what}: no metadata (not a hiors checkpoint)')
    data_len = total_size - 8 - n
    end = 0
    for k, e in header.items():
        try:
            a, b = e['data_offsets']
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f'{what}: bad header entry for {k!r}') from None
        if not (0 <= a <= b):
            raise CheckpointError(f'{what}: bad data offsets for {k!r}')
        end = max(end, b)
    if end > data_len:
        raise CheckpointError(f'{what}: truncated (tensor data needs {end} bytes, file has {data_len})')
    if end < data_len:
        raise CheckpointError(f'{what}: {data_len - end} trailing bytes after the tensor data')
    return meta, header


def _read_head(src) -> tuple[bytes, int, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        b = bytes(src[:8 + MAX_HEADER])
        return b, len(src), 'checkpoint bytes'
    p = Path(src)
    if not p.is_file():
        raise CheckpointError(f'checkpoint file not found: {p}')
    size = p.stat().st_size
    with open(p, 'rb') as f:
        first = f.read(8)
        if len(first) == 8:
            (n,) = struct.unpack('<Q', first)
            first += f.read(min(n, MAX_HEADER))
    return first, size, str(p)


def read_metadata(src) -> tuple[PolicyConfig, NormStats, str, dict]:
    """(config, norm_stats, version, tensor header entries) from a path or bytes; validates the
    file layout and the metadata without loading weights."""
    head, size, what = _read_head(src)
    meta, entries = _parse_header(head, size, what)
    fmt = meta.get('format')
    if fmt != FORMAT:
        raise CheckpointError(f'{what}: format {fmt!r}, expected {FORMAT!r}')
    for k in ('config', 'norm_stats', 'version'):
        if k not in meta:
            raise CheckpointError(f'{what}: metadata is missing {k!r}')
    try:
        config = PolicyConfig.from_json(meta['config'])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f'{what}: bad config metadata: {e}') from None
    try:
        norm_stats = NormStats.from_json(meta['norm_stats'])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f'{what}: bad norm_stats metadata: {e}') from None
    if norm_stats.state_mean.shape[0] != config.state_dim or norm_stats.action_mean.shape[0] != config.action_dim:
        raise CheckpointError(f'{what}: norm_stats dims do not match config state/action dims')
    return config, norm_stats, str(meta['version']), entries


def training_prompt(src) -> str:
    """The instruction a checkpoint was trained on ('' when it does not say)."""
    head, size, what = _read_head(src)
    meta, _ = _parse_header(head, size, what)
    return str(meta.get('prompt', ''))


def _load_tensors(src, what: str) -> dict[str, torch.Tensor]:
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            return st_load(bytes(src))
        return st_load_file(str(src), device='cpu')
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f'{what}: cannot read tensors: {e}') from None


def check_state_dict(expected: dict[str, torch.Tensor], got: dict, what: str = 'checkpoint',
                     check_finite: bool = True) -> None:
    """Clear errors for missing / extra keys, shape mismatch, non-float where float expected, NaN."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        def short(x):
            return x[:8] + ([f'... {len(x) - 8} more'] if len(x) > 8 else [])
        raise CheckpointError(f'{what}: keys do not match the model: missing {short(missing)}, extra {short(extra)}')
    bad = []
    for k, ref in expected.items():
        v = got[k]
        shape = tuple(v['shape']) if isinstance(v, dict) else tuple(v.shape)
        if shape != tuple(ref.shape):
            bad.append(f'{k}: file {shape} vs model {tuple(ref.shape)}')
    if bad:
        raise CheckpointError(f'{what}: shape mismatch: ' + '; '.join(bad[:8])
                              + (f' ... {len(bad) - 8} more' if len(bad) > 8 else ''))
    if check_finite:
        for k, v in got.items():
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise CheckpointError(f'{what}: tensor {k!r} has NaN/inf values')


def load_checkpoint(src, device: str | torch.device = 'cpu', check_finite: bool = True):
    """Path or bytes -> (policy (eval mode, on device), config, norm_stats, version)."""
    config, norm_stats, version, entries = read_metadata(src)
    what = src if isinstance(src, (str, Path)) else 'checkpoint bytes'
    dev = resolve_device(device)
    # Check names and shapes from the header before allocating a (maybe 3B-parameter) model.
    with torch.device('meta'):
        ref = Pi0Policy(config).state_dict()
    check_state_dict(ref, entries, str(what), check_finite=False)
    tensors = _load_tensors(src, str(what))
    check_state_dict(ref, tensors, str(what), check_finite=check_finite)
    policy = Pi0Policy.empty(config, device=dev)
    policy.load_state_dict(tensors, strict=True)
    policy.eval()
    return policy, config, norm_stats, version


def load_state_into(policy: Pi0Policy, src, check_finite: bool = True):
    """Hot swap: copy a checkpoint's weights into an existing model in place (same architecture).
    Everything is validated before the first tensor is copied, so on error the model is
    untouched. Returns (config, norm_stats, version) of the checkpoint."""
    config, norm_stats, version, entries = read_metadata(src)
    what = str(src) if isinstance(src, (str, Path)) else 'checkpoint bytes'
    mine = {k: v for k, v in policy.config.to_dict().items() if k not in RUNTIME_FIELDS}
    theirs = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}
    diff = sorted(k for k in mine if mine[k] != theirs.get(k))
    if diff:
        raise CheckpointError(f'{what}: architecture differs from the running model in {diff}')
    ref = policy.state_dict()
    check_state_dict(ref, entries, what, check_finite=False)
    tensors = _load_tensors(src, what)
    check_state_dict(ref, tensors, what, check_finite=check_finite)
    with torch.no_grad():
        for k, v in ref.items():
            v.copy_(tensors[k])
    return config, norm_stats, version


def sha256_of(src) -> str:
    h = hashlib.sha256()
    if isinstance(src, (bytes, bytearray, memoryview)):
        h.update(src)
    else:
        with open(src, 'rb') as f:
            for block in iter(lambda: f.read(1 << 22), b''):
                h.update(block)
    return h.hexdigest()


__all__ = ['FORMAT', 'CheckpointError', 'save_checkpoint', 'checkpoint_bytes', 'load_checkpoint',
           'load_state_into', 'read_metadata', 'check_state_dict', 'sha256_of']
