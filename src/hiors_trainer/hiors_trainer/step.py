"""The optimiser: AdamW at the cosine-scheduled learning rate with gradient clipping, the EMA of the
weights, one update step (skipped on a non-finite loss or gradient), and its state as tensors +
JSON scalars for the checkpoint (no pickle)."""
from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger('hiors_trainer')

# With EMA on, the optimizer file also holds the raw (non-averaged) weights under this prefix.
RAW_PREFIX = 'raw_weights.'


def cosine_lr(step: int, lr: float, end_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """openpi CosineDecaySchedule: linear warm-up to lr, cosine decay to end_lr, then flat."""
    if step < warmup_steps:
        init = lr / (warmup_steps + 1)
        return init + (lr - init) * step / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, decay_steps))
    return end_lr + (lr - end_lr) * 0.5 * (1 + math.cos(math.pi * t))


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """AdamW state -> (flat tensors for safetensors, JSON-able scalars). No pickle."""
    sd = opt.state_dict()
    tensors, scalars = {}, {'param_groups': sd['param_groups'], 'state': {}}
    for idx, st in sd['state'].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f'{idx}.{k}'] = v.detach().to('cpu').contiguous()
            else:
                scalars['state'].setdefault(str(idx), {})[k] = v
    return tensors, scalars


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, scalars: dict):
    state: dict = {}
    for name, v in tensors.items():
        idx, k = name.split('.', 1)
        state.setdefault(int(idx), {})[k] = v
    for idx, d in scalars.get('state', {}).items():
        state.setdefault(int(idx), {}).update(d)
    groups = scalars['param_groups']
    for g in groups:
        if 'betas' in g:
            g['betas'] = tuple(g['betas'])
    opt.load_state_dict({'state': state, 'param_groups': groups})


class Optimisation:
    """AdamW + cosine LR + EMA over a built model (`attach`); `update` is one train step.
    `opt_cfg` is TrainerConfig.resolved(); `ema_warmup` ramps the EMA decay up from the start."""

    def __init__(self, opt_cfg: dict, ema_decay: float = 0.0, ema_warmup: bool = True):
        self.o = opt_cfg
        self.ema_decay, self.ema_warmup = ema_decay, ema_warmup
        self.optimizer = None
        self.ema = None
        self.nonfinite_steps = 0
        self.last_loss = float('nan')

    def attach(self, loss_module: torch.nn.Module, policy: torch.nn.Module):
        """`loss_module` holds the parameters to step (sharded under FSDP), `policy` the weights
        the EMA averages."""
        self.loss_module, self.policy = loss_module, policy
        self.ema = ({k: v.detach().clone() for k, v in policy.state_dict().items()}
                    if self.ema_decay else None)
        # After sharding: the optimizer must hold the (sharded) parameters.
        o = self.o
        self.optimizer = torch.optim.AdamW(self._param_groups(loss_module, policy), lr=o['lr'],
                                           betas=o['betas'], weight_decay=o['weight_decay'])

    @staticmethod
    def _param_groups(loss_module: torch.nn.Module, policy: torch.nn.Module) -> list[dict]:
        """One group at the scheduled lr; a pretrained vision backbone's parameters in a second
        group at lr x PolicyConfig.vision_backbone_lr_scale ('lr_scale', applied by set_lr)."""
        backbone, rest = [], []
        for name, prm in loss_module.named_parameters():
            (backbone if 'vision.backbone.' in name else rest).append(prm)
        groups = [{'params': rest, 'lr_scale': 1.0}]
        if backbone:
            groups.append({'params': backbone, 'lr_scale': float(policy.config.vision_backbone_lr_scale)})
        return groups

    def set_lr(self, step: int) -> float:
        o = self.o
        lr = cosine_lr(step, o['lr'], o['end_lr'], o['warmup_steps'], o['decay_steps'])
        for g in self.optimizer.param_groups:
            g['lr'] = lr * g.get('lr_scale', 1.0)
        return lr

    def update(self, batch: dict, indicator: torch.Tensor, step: int, lr: float) -> dict:
        """Loss, backward, clip and step at `lr`; {'loss', 'lr', 'grad_norm'}, plus 'skipped':
        True when the loss or gradient was not finite (the weights are left as they were)."""
        loss = self.loss_module(batch, indicator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.loss_module.parameters(), self.o['grad_clip'])
        if hasattr(gnorm, 'full_tensor'):
            gnorm = gnorm.full_tensor()
        if not (torch.isfinite(loss) and torch.isfinite(gnorm)):
            # Skip the update (weights stay finite); give up only if it keeps happening.
            self.nonfinite_steps += 1
            log.warning('non-finite loss/gradient at step %d: update skipped', step)
            if self.nonfinite_steps >= 10:
                raise FloatingPointError(f'{self.nonfinite_steps} non-finite steps in a row at step {step}')
            return {'loss': float('nan'), 'lr': lr, 'grad_norm': float('nan'), 'skipped': True}
        self.nonfinite_steps = 0
        self.last_loss = loss.item()
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema(step)
        return {'loss': loss.item(), 'lr': lr, 'grad_norm': gnorm.item()}

    @torch.no_grad()
    def _update_ema(self, step: int):
        # Fine-tuning from init_checkpoint: the average starts at trained weights, so no warm-up
        # (it would hand the published weights to the first, noisiest online steps).
        d = (min(self.ema_decay, (1.0 + step) / (10.0 + step)) if self.ema_warmup else self.ema_decay)
        for k, v in self.policy.state_dict().items():
            e = self.ema[k]
            if e.is_floating_point():
                e.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                e.copy_(v)

    def ema_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.ema.items()}

    def state(self, sharded: bool) -> tuple[dict, dict]:
        """The optimizer file's tensors and the state JSON's 'optimizer' scalars; with EMA the
        raw weights go with them under RAW_PREFIX (the policy checkpoint holds the average)."""
        if sharded:
            # Sharded moments are not gathered (they would need the whole model's memory twice).
            return {}, {'fsdp': True, 'state': {}, 'param_groups': []}
        tensors, scalars = optimizer_to_tensors(self.optimizer)
        if self.ema is not None:
            tensors.update({RAW_PREFIX + k: v.detach().to('cpu').contiguous()
                            for k, v in self.policy.state_dict().items()})
        return tensors, scalars

    def load_state(self, tensors: dict, scalars: dict):
        """Inverse of `state` on a model built from the checkpoint's (averaged) weights."""
        raw = {k[len(RAW_PREFIX):]: v for k, v in tensors.items() if k.startswith(RAW_PREFIX)}
        if raw:
            # The checkpoint holds the EMA weights; training resumes on the raw ones.
            if self.ema is not None:
                self.ema = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
            self.policy.load_state_dict(raw, strict=True)
        optimizer_from_tensors(self.optimizer, {k: v for k, v in tensors.items()
                                                if not k.startswith(RAW_PREFIX)}, scalars)
