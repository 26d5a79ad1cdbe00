"""Policy inference benchmark.

Prints:
  * parameter counts of every preset (built on the meta device: no memory, no init),
  * 'tiny' chunk latency on CPU (2 threads by default): model only (prefix encoded once + N Euler
    steps) and end to end (raw uint8 images + state + prompt -> unnormalised (H, 7) chunk), plus the
    same chunk without the prefix KV cache for comparison; mean / p50 / p95 over --n chunks,
  * full 'pi0' chunk latency on CUDA (bf16 weights, random init) when a GPU is present;
    otherwise a line saying it was skipped.

Usage: python bench/bench_policy_inference.py [--n 50] [--threads 2] [--presets tiny,small]
Timings depend on machine load; re-run on a quiet machine for reported figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from hiors_policy.config import PRESETS, make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.processing import NormStats, PolicyProcessor
from hiors_policy.synthetic import random_observation


def stats_ms(ts):
    a = np.asarray(ts) * 1000.0
    return f'mean {a.mean():7.2f} ms  p50 {np.percentile(a, 50):7.2f} ms  p95 {np.percentile(a, 95):7.2f} ms  (n={len(a)})'


def timed(fn, n, warmup, sync=None):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return ts


def random_init_(policy: Pi0Policy, seed: int = 0) -> None:
    """Deterministic small random weights (for timing; memory from Pi0Policy.empty is uninitialised)."""
    g = torch.Generator(device=policy.device).manual_seed(seed)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if n.startswith('vision.') and ('layer_norm' in n or 'post_layernorm' in n):
                p.fill_(1.0 if n.endswith('weight') else 0.0)     # SigLIP LayerNorm
            elif 'norm' in n or n.endswith('bias'):
                p.zero_()                                        # Gemma RMSNorm scales by (1 + w)
            else:
                p.normal_(0.0, 0.02, generator=g)


def param_counts():
    print('== parameter counts (meta device) ==')
    for name in PRESETS:
        c = make_config(name)
        with torch.device('meta'):
            p = Pi0Policy(c)
        parts = {
            'vision': sum(x.numel() for x in p.vision.parameters()) + sum(x.numel() for x in p.projector.parameters()),
            'lm': sum(x.numel() for x in p.lm.parameters()),
            'expert': sum(x.numel() for x in p.expert.parameters()),
        }
        parts['heads'] = p.num_parameters() - sum(parts.values())
        detail = '  '.join(f'{k} {v / 1e6:.2f}M' for k, v in parts.items())
        print(f'{name:6s} total {p.num_parameters() / 1e6:10.2f}M   {detail}   prefix tokens {c.prefix_len}')


def cpu_latency(preset: str, n: int, threads: int):
    torch.set_num_threads(threads)
    c = make_config(preset)
    torch.manual_seed(0)
    p = Pi0Policy(c).eval()
    proc = PolicyProcessor(c, NormStats.identity(c.state_dim, c.action_dim))
    images, state, prompt = random_observation(c)
    batch = proc.prepare_observation(images, state, prompt)
    print(f'== {preset} on CPU, {threads} thread(s), {c.num_inference_steps} Euler steps, '
          f'{len(c.camera_names)} cameras {c.image_size}x{c.image_size}, H={c.chunk_size} ==')
    warm = max(3, n // 10)
    with torch.inference_mode():
        ts = timed(lambda: p.sample_actions(batch), n, warm)
        print(f'  model chunk (KV cache):     {stats_ms(ts)}')
        ts_e2e = timed(lambda: proc.unnormalize_actions(
            p.sample_actions(proc.prepare_observation(images, state, prompt))), n, warm)
        print(f'  end to end (raw -> chunk):  {stats_ms(ts_e2e)}')
        ts_nc = timed(lambda: p.sample_actions(batch, use_kv_cache=False), max(5, n // 3), 2)
        print(f'  model chunk (no KV cache):  {stats_ms(ts_nc)}')
    return statistics.mean(ts)


def cuda_pi0(n: int):
    if not torch.cuda.is_available():
        print("== pi0 on CUDA: skipped (no CUDA device on this machine) ==")
        return
    dev = torch.device('cuda')
    c = make_config('pi0')
    p = Pi0Policy.empty(c, device=dev)
    random_init_(p)
    p = p.to(torch.bfloat16).eval()
    images, state, _ = random_observation(c)
    from hiors_policy.tokenizer import ByteTokenizer
    proc = PolicyProcessor(c, NormStats.identity(c.state_dim, c.action_dim), tokenizer=ByteTokenizer())
    batch = {k: v.to(dev) for k, v in proc.prepare_observation(images, state, 'insert the peg').items()}
    print(f'== pi0 on {torch.cuda.get_device_name(0)}: bf16 weights, {c.num_inference_steps} steps, '
          f'{p.num_parameters() / 1e9:.2f}B params ==')
    with torch.inference_mode():
        ts = timed(lambda: p.sample_actions(batch), n, 5, sync=torch.cuda.synchronize)
        print(f'  model chunk (KV cache):     {stats_ms(ts)}')
        ts = timed(lambda: p.sample_actions(batch, use_kv_cache=False), max(5, n // 3), 2, sync=torch.cuda.synchronize)
        print(f'  model chunk (no KV cache):  {stats_ms(ts)}')
    print(f'  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=50, help='chunks timed per measurement')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--presets', default='tiny', help='comma-separated presets timed on CPU')
    args = ap.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    param_counts()
    for name in args.presets.split(','):
        cpu_latency(name.strip(), args.n, args.threads)
    cuda_pi0(args.n)


if __name__ == '__main__':
    main()
