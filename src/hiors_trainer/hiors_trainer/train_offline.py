"""Offline training (no ROS): the base policy from demonstration episodes (BC), or any method of
the trainer on a fixed episode directory.

    python -m hiors_trainer.train_offline --episodes DIR --steps N --out ckpt.safetensors

Multi-GPU (one process per GPU; DDP, or --parallel fsdp to shard weights/grads/AdamW moments;
bf16 from the preset's dtype):
    torchrun --nproc_per_node=8 -m hiors_trainer.train_offline --episodes DIR --steps N \
        --out ckpt.safetensors --device cuda --preset pi0 --profile pi0
(CPU: the same with --device cpu uses the gloo backend.)
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile

from .core import METHODS, PROFILES, Trainer, TrainerConfig


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--episodes', required=True, help='episode directory (recorder layout)')
    p.add_argument('--steps', type=int, required=True)
    p.add_argument('--out', required=True, help='output checkpoint (.safetensors)')
    p.add_argument('--method', default='bc', choices=sorted(METHODS))
    p.add_argument('--preset', default='tiny')
    p.add_argument('--profile', default='cpu', choices=sorted(PROFILES))
    p.add_argument('--init', default='', help='start from this checkpoint')
    p.add_argument('--lr', type=float, default=0.0)
    p.add_argument('--batch-size', type=int, default=0)
    p.add_argument('--warmup-steps', type=int, default=0)
    p.add_argument('--decay-steps', type=int, default=0)
    p.add_argument('--ema', type=float, default=0.0,
                   help='EMA decay of the weights (the output holds the average); 0 = off')
    p.add_argument('--noise-samples', type=int, default=1, help='flow-matching draws per observation and step')
    p.add_argument('--replan-stride', type=int, default=0, help="0 = the policy's n_action_steps")
    p.add_argument('--rate-hz', type=float, default=0.0)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--parallel', default='ddp', choices=['ddp', 'fsdp'], help='with torchrun')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--work-dir', default='', help='trainer state (resumable); default: a temp dir')
    p.add_argument('--checkpoint-every', type=int, default=0, help='steps; 0 = only at the end')
    p.add_argument('--tensorboard', default='')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def _dist_setup(device: str):
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return 0, 1, device
    import torch
    import torch.distributed as dist
    rank, local = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    if device.startswith('cuda'):
        torch.cuda.set_device(local)
        device = f'cuda:{local}'
        dist.init_process_group('nccl')
    else:
        dist.init_process_group('gloo')
    return rank, world, device


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    rank, world, device = _dist_setup(a.device)
    tmp = None
    work = a.work_dir
    if not work:
        tmp = tempfile.mkdtemp(prefix='hiors-train-')
        work = tmp
    # Every rank reads the same work dir (resume must start all ranks from the same weights);
    # only rank 0 writes to it.
    bc = METHODS[a.method].get('use_online', True) is False
    cfg = TrainerConfig(episode_dir=a.episodes, demo_dir=a.episodes if bc else '', out_dir=work,
                        method=a.method, profile=a.profile, policy_preset=a.preset, init_checkpoint=a.init,
                        lr=a.lr, batch_size=a.batch_size, ema_decay=a.ema, noise_samples=a.noise_samples,
                        warmup_steps=a.warmup_steps,
                        decay_steps=a.decay_steps, replan_stride=a.replan_stride, rate_hz=a.rate_hz,
                        device=device, num_threads=a.threads, seed=a.seed, parallel=a.parallel,
                        checkpoint_every_steps=a.checkpoint_every, intake_interval_s=1e9,
                        tensorboard_dir=a.tensorboard)
    tr = Trainer(cfg, rank=rank, world_size=world)
    tr.resume_or_init()
    tr.ingest()
    r = tr.report()
    logging.info('data: %s', r)
    if not tr.ready():
        logging.error('no usable training samples in %s (report: %s)', a.episodes, r)
        return 2
    if world > 1:
        # Every rank must use the same normalisation: rank 0's stats are broadcast.
        import torch.distributed as dist
        obj = [tr.norm_stats_from_data().to_json() if rank == 0 else None]
        dist.broadcast_object_list(obj, src=0)
        from hiors_policy.processing import NormStats, PolicyProcessor
        tr.norm_stats = NormStats.from_json(obj[0])
        tr.processor = PolicyProcessor(tr.config, tr.norm_stats)
    out = tr.run(max_steps=a.steps, progress=not a.no_progress)
    weights = tr.model_state()           # collective under FSDP
    if rank == 0:
        from hiors_policy.checkpoint import save_checkpoint
        from .core import FullWeights
        info = save_checkpoint(a.out, FullWeights(weights), tr.config, tr.norm_stats, f'offline-{tr.step:06d}')
        logging.info('wrote %s (sha256 %s, last loss %.4f)', info['path'], info['sha256'],
                     out.get('loss', float('nan')))
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
