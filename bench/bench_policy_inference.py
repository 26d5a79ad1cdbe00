"""Policy inference benchmark.

Prints:
  * parameter counts of every preset (built on the meta device: no memory, no init),
  * 'tiny' chunk latency on CPU (2 threads by default): model only (prefix encoded once + N Euler
    steps) and end to end (raw uint8 images + state + prompt -> unnormalised (H, 7) chunk), plus the
    same chunk without the prefix KV cache for comparison; mean / p50 / p95 over --n chunks,
  * with --checkpoint, a trained policy end to end at the home pose, down to the joint targets
    (inverse kinematics of a tool-space chunk timed on its own as well),
  * full 'pi0' chunk latency on CUDA (bf16 weights, random init) when a GPU is present;
    otherwise a line saying it was skipped.

Usage: python bench/bench_policy_inference.py [--n 50] [--threads 2] [--presets tiny,small]
       [--vision-backbone efficientnet_lite0] [--checkpoint pretrained:5demos_tool]
Timings depend on machine load; re-run on a quiet machine for reported figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()          # no DDS is used here; set anyway, like every bench

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hiors_policy.config import PRESETS, make_config  # noqa: E402
from hiors_policy.modeling import Pi0Policy  # noqa: E402
from hiors_policy.processing import NormStats, PolicyProcessor  # noqa: E402
from hiors_policy.synthetic import random_observation  # noqa: E402


def stats_ms(ts):
    a = np.asarray(ts) * 1000.0
    return (f'mean {a.mean():7.2f} ms  p50 {np.percentile(a, 50):7.2f} ms  '
            f'p95 {np.percentile(a, 95):7.2f} ms  (n={len(a)})')


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


def cpu_latency(preset: str, n: int, threads: int, **overrides):
    torch.set_num_threads(threads)
    c = make_config(preset, **overrides)
    torch.manual_seed(0)
    p = Pi0Policy(c).eval()
    proc = PolicyProcessor(c, NormStats.identity(c.state_dim, c.action_dim))
    images, state, prompt = random_observation(c)
    batch = proc.prepare_observation(images, state, prompt)
    print(f'== {preset}{" " + str(overrides) if overrides else ""} on CPU, {threads} thread(s), '
          f'{c.num_inference_steps} Euler steps, '
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
    from hiors_policy.checkpoint import checkpoint_bytes, load_state_into
    ns = NormStats.identity(c.state_dim, c.action_dim)
    data = checkpoint_bytes(p, c, ns, 'bench')
    ts_w = timed(lambda: checkpoint_bytes(p, c, ns, 'bench'), 10, 2)
    ts_r = timed(lambda: load_state_into(p, data), 10, 2)
    print(f'  checkpoint {len(data) / 1e6:.2f} MB: serialise {stats_ms(ts_w)}')
    print(f'  hot swap (validate + copy into the live model): {stats_ms(ts_r)}')
    return statistics.mean(ts)


def pi0_latency(n: int, device: torch.device, **overrides):
    """Full pi0 (or a reduced-depth copy, for a CPU smoke run) with bf16 weights, random init."""
    c = make_config('pi0', **overrides)
    p = Pi0Policy.empty(c, device=device)
    random_init_(p)
    p = p.to(torch.bfloat16).eval()
    images, state, _ = random_observation(c)
    from hiors_policy.tokenizer import ByteTokenizer     # real pi0 uses the PaliGemma tokenizer file
    proc = PolicyProcessor(c, NormStats.identity(c.state_dim, c.action_dim), tokenizer=ByteTokenizer())
    batch = {k: v.to(device) for k, v in proc.prepare_observation(images, state, 'insert the peg').items()}
    sync = torch.cuda.synchronize if device.type == 'cuda' else None
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'== pi0{" (reduced: " + str(overrides) + ")" if overrides else ""} on {name}: bf16 weights, '
          f'{c.num_inference_steps} steps, {p.num_parameters() / 1e9:.2f}B params ==')
    with torch.inference_mode():
        ts = timed(lambda: p.sample_actions(batch), n, 3, sync=sync)
        print(f'  model chunk (KV cache):     {stats_ms(ts)}')
        chunk = p.sample_actions(batch)
        assert torch.isfinite(chunk).all(), 'non-finite actions'
        ts = timed(lambda: p.sample_actions(batch, use_kv_cache=False), max(3, n // 3), 1, sync=sync)
        print(f'  model chunk (no KV cache):  {stats_ms(ts)}')
    if device.type == 'cuda':
        print(f'  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB')


def checkpoint_latency(source: str, task: str, n: int, threads: int):
    """A trained policy from raw frames, joints and object poses at the home pose to the joint
    targets the chunk executor gets (PolicyProcessor.joint_targets: IK per row in tool space)."""
    from hiors.demo import base_source
    from hiors_common.robot import HOME_Q
    from hiors_policy.checkpoint import load_checkpoint
    torch.set_num_threads(threads)
    p, c, norm_stats, _ = load_checkpoint(base_source(source, task))
    proc = PolicyProcessor(c, norm_stats)
    images, _, prompt = random_observation(c)
    state = np.concatenate([HOME_Q, norm_stats.state_mean[len(HOME_Q):]])   # mean object poses
    print(f'== {source} ({c.name}, action_space {c.action_space}) on CPU, {threads} thread(s) ==')
    with torch.inference_mode():
        out = p.sample_actions(proc.prepare_observation(images, state, prompt))[0]
        ts = timed(lambda: proc.joint_targets(out, state), n, 3)
        print(f'  chunk -> joint targets:     {stats_ms(ts)}')
        ts = timed(lambda: proc.joint_targets(p.sample_actions(proc.prepare_observation(images, state, prompt))[0],
                                              state), n, max(3, n // 10))
        print(f'  end to end (raw -> joints): {stats_ms(ts)}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=50, help='chunks timed per measurement')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--presets', default='tiny', help='comma-separated presets timed on CPU')
    ap.add_argument('--pi0-smoke-cpu', action='store_true',
                    help='also run the pi0 code path on CPU at depth 1 (checks shapes, not speed)')
    ap.add_argument('--vision-backbone', default='', help="override vision_backbone of the CPU presets "
                    "('conv' | 'efficientnet_lite0'; keypoint tower only)")
    ap.add_argument('--checkpoint', default='',
                    help="also time a trained checkpoint ('pretrained:<variant>' or a file) end to end at the "
                         "home pose: what the policy node runs, inverse kinematics of a tool-space chunk included")
    ap.add_argument('--task', default='peg_insert_narrow',
                    help="the task whose committed base a 'pretrained:<variant>' --checkpoint names")
    args = ap.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    param_counts()
    for name in args.presets.split(','):
        over = {'vision_backbone': args.vision_backbone} if args.vision_backbone else {}
        cpu_latency(name.strip(), args.n, args.threads, **over)
    if args.checkpoint:
        checkpoint_latency(args.checkpoint, args.task, args.n, args.threads)
    if args.pi0_smoke_cpu:
        pi0_latency(3, torch.device('cpu'), vision_depth=1, lm_depth=1)
    if torch.cuda.is_available():
        pi0_latency(args.n, torch.device('cuda'))
    else:
        print('== pi0 on CUDA: skipped (no CUDA device on this machine) ==')


if __name__ == '__main__':
    main()
