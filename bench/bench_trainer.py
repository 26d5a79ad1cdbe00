"""Trainer throughput benchmark (training samples/s).

Prints:
  * 'tiny' on CPU (2 threads by default): the whole Hi-ORS train step of the trainer core on
    recorded episodes (MCAP bags written through the recorder, 224x224 images, two cameras):
    batch draw + processing + forward/backward + clip + AdamW, and the model step alone
    (pre-built batch), both as samples/s;
  * on CUDA when present: 'small' and full-size 'pi0' (random init, bf16 autocast, fp32 weights,
    AdamW) model steps as samples/s; otherwise a line saying they were skipped.

Usage: python bench/bench_trainer.py [--threads 2] [--batch 8] [--steps 10]
Timings depend on machine load; re-run on a quiet machine for reported figures.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()          # no DDS is used here; set anyway, like every bench

import torch  # noqa: E402


def model_step_rate(preset: str, device: str, batch: int, steps: int, grad_ckpt: bool = False) -> float:
    from hiors_policy.config import make_config
    from hiors_policy.modeling import Pi0Policy
    from hiors_policy.synthetic import random_batch
    from hiors_trainer.core import hiors_loss
    c = make_config(preset, dtype='bfloat16' if device.startswith('cuda') else 'float32')
    torch.manual_seed(0)
    with torch.device(device):
        p = Pi0Policy(c)
    p.train()
    if grad_ckpt:
        p.gradient_checkpointing = True
    opt = torch.optim.AdamW(p.parameters(), lr=2.5e-5, betas=(0.9, 0.95), weight_decay=1e-10)
    b = {k: v.to(device) for k, v in random_batch(c, batch).items()}
    ind = torch.ones(batch, device=device)

    def step():
        loss = hiors_loss(p, b, ind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(p.parameters(), 1.0)
        opt.step()
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    for _ in range(2):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t)


def trainer_step_rate(batch: int, steps: int, threads: int) -> tuple[float, dict]:
    from hiors_recorder.synthetic import write_synthetic_episode
    from hiors_trainer.core import Trainer, TrainerConfig
    d = tempfile.mkdtemp(prefix='hiors-bench-trainer-')
    for i in range(3):
        write_synthetic_episode(d + '/eps', steps=60, outcome='success', seed=i, image_size=(224, 224),
                                start_ns=int(1e18) + i * int(1e10), intervene=(10, 30))
    tr = Trainer(TrainerConfig(episode_dir=d + '/eps', out_dir=d + '/out', batch_size=batch, num_threads=threads))
    tr.resume_or_init()
    tr.ingest()
    for _ in range(2):
        tr.train_step()
    t = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    return batch * steps / (time.perf_counter() - t), tr.report()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--gpu-batch', type=int, default=32)
    ap.add_argument('--pi0-batch', type=int, default=8)
    a = ap.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(a.threads)
    rate, rep = trainer_step_rate(a.batch, a.steps, a.threads)
    print(f'tiny  cpu  {a.threads} threads  batch {a.batch}: trainer step (episodes -> AdamW) '
          f'{rate:7.1f} samples/s  [{rep["accepted_samples"]} accepted samples]')
    rate = model_step_rate('tiny', 'cpu', a.batch, a.steps)
    print(f'tiny  cpu  {a.threads} threads  batch {a.batch}: model step only            {rate:7.1f} samples/s')
    if not torch.cuda.is_available():
        print('cuda: not available here -> small / pi0 GPU training rates skipped')
        return
    name = torch.cuda.get_device_name()
    rate = model_step_rate('small', 'cuda', a.gpu_batch, a.steps)
    print(f'small cuda ({name}) bf16 batch {a.gpu_batch}: {rate:8.1f} samples/s')
    try:
        rate = model_step_rate('pi0', 'cuda', a.pi0_batch, max(3, a.steps // 2), grad_ckpt=True)
        print(f'pi0   cuda ({name}) bf16 batch {a.pi0_batch} (grad ckpt): {rate:8.1f} samples/s, '
              f'peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB')
    except torch.cuda.OutOfMemoryError as e:
        print(f'pi0   cuda: out of memory at batch {a.pi0_batch} on one GPU ({e.__class__.__name__}); use FSDP')


if __name__ == '__main__':
    main()
