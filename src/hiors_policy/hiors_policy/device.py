"""Device selection and the compute-dtype (autocast) context."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(spec: str | torch.device = 'auto') -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' (error if unavailable)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or 'auto').strip().lower()
    if spec == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if spec == 'cpu':
        return torch.device('cpu')
    if spec.startswith('cuda'):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available on this machine")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f'device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)')
        return dev
    raise ValueError(f"unknown device {spec!r}; use 'auto', 'cpu' or 'cuda[:N]'")


def torch_dtype(name: str) -> torch.dtype:
    try:
        return {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[name]
    except KeyError:
        raise ValueError(f'unknown dtype {name!r}') from None


def autocast(device: torch.device, dtype: str):
    """bf16 autocast when the config asks for it; a no-op context for float32."""
    if dtype == 'float32':
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch_dtype(dtype))
