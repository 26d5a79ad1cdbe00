"""The policy and the module the optimiser steps: the Hi-ORS loss, wrapped in DDP or sharded with
FSDP under torchrun, and the full (unsharded) weights read back out of it."""
from __future__ import annotations

import torch


def hiors_loss(policy, batch: dict, indicator: torch.Tensor, noise=None, time=None,
               noise_samples: int = 1) -> torch.Tensor:
    """L = E[ 1[R(tau) >= m] * || v_theta(u, s, x^u) - (x1 - x0) ||^2 ] over a batch: the
    per-sample flow-matching loss (time u ~ Beta(1.5, 1), every denoising time) weighted by the
    rejection indicator, averaged over the batch."""
    per = policy.compute_loss(batch, noise=noise, time=time, sample_weight=indicator,
                              noise_samples=noise_samples)
    return per.mean()


class _LossModule(torch.nn.Module):
    """DDP needs forward(); this routes it to the policy's loss."""

    def __init__(self, policy, noise_samples: int = 1):
        super().__init__()
        self.policy = policy
        self.noise_samples = noise_samples

    def forward(self, batch, indicator):
        return hiors_loss(self.policy, batch, indicator, noise_samples=self.noise_samples)


def build_policy(config, device, state_dict=None):
    """A Pi0Policy of `config` on `device` in training mode, from `state_dict` if given."""
    from hiors_policy.modeling import Pi0Policy
    policy = Pi0Policy(config).to(device)
    if state_dict is not None:
        policy.load_state_dict(state_dict, strict=True)
    policy.train()
    return policy


def loss_module(policy, device, noise_samples: int = 1, world_size: int = 1, fsdp: bool = False):
    """The policy's loss as a module: plain, DDP-wrapped (world_size > 1) or FSDP-sharded."""
    module = _LossModule(policy, noise_samples)
    if fsdp:
        # FSDP2, one group at the root: parameters, gradients and AdamW moments are sharded
        # across ranks and gathered for the step (the joint layers call sub-modules directly,
        # not their forward(), so per-layer groups would not get their gather hooks).
        from torch.distributed.fsdp import fully_shard
        fully_shard(module)
    elif world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [device.index] if device.type == 'cuda' else None
        # A few parameters never reach the loss (the prefix LM's last-layer outputs are not
        # read by the action expert), so DDP must look for unused ones.
        module = DDP(module, device_ids=ids, find_unused_parameters=True)
    return module


def full_weights(module, policy, fsdp: bool = False) -> dict:
    """Full (unsharded, CPU under FSDP) weights of the policy. Collective under FSDP: every rank calls."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        sd = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k[len('policy.'):]: v for k, v in sd.items()}
    return policy.state_dict()
