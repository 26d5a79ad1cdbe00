"""The trainer's checkpoint files in out_dir: one numbered set (policy checkpoint, optimizer tensors,
state JSON) written atomically and then named in latest.json, pruning to the last keep_last sets,
and reading the latest set back for a resume."""
from __future__ import annotations

import json
import os

from safetensors.torch import load_file as st_load_file
from safetensors.torch import save_file as st_save_file

from hiors_common.atomic import atomic_path, atomic_write_json


class FullWeights:
    """A state dict in the shape save_checkpoint expects of a policy (it calls state_dict())."""

    def __init__(self, state_dict: dict):
        self._sd = state_dict

    def state_dict(self) -> dict:
        return self._sd


def read_policy(path: str) -> tuple[dict, object, object]:
    """(weights, PolicyConfig, NormStats) of a policy checkpoint."""
    from hiors_policy.checkpoint import read_metadata
    config, norm_stats, _, _ = read_metadata(path)
    return st_load_file(path), config, norm_stats


class CheckpointStore:
    """ckpt_NNNNNN.safetensors + optim_NNNNNN.safetensors + state_NNNNNN.json, then latest.json
    naming them: a kill -9 at any point leaves the previous complete set as latest."""

    def __init__(self, out_dir: str, keep_last: int):
        self.out_dir, self.keep_last = out_dir, keep_last
        os.makedirs(self.out_dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def latest(self) -> dict | None:
        """latest.json's names ('checkpoint', 'optimizer', 'state_json', 'version'), None before the first."""
        latest = self.path('latest.json')
        if not os.path.exists(latest):
            return None
        with open(latest) as f:
            return json.load(f)

    def read_state(self, names: dict) -> dict:
        with open(self.path(names['state_json'])) as f:
            return json.load(f)

    def read_optimizer(self, names: dict) -> dict:
        return st_load_file(self.path(names['optimizer']))

    def save(self, version: int, weights: dict, config, norm_stats, prompt: str, optimizer: dict,
             state: dict) -> dict:
        """Write set `version` (policy checkpoint, the optimizer tensors, the state JSON), then
        latest.json; the policy checkpoint's info {'path', 'sha256', 'size', 'format', 'version'}."""
        from hiors_policy.checkpoint import save_checkpoint
        v = f'{version:06d}'
        names = {'checkpoint': f'ckpt_{v}.safetensors', 'optimizer': f'optim_{v}.safetensors',
                 'state_json': f'state_{v}.json', 'version': v}
        info = save_checkpoint(self.path(names['checkpoint']), FullWeights(weights), config, norm_stats, v,
                               prompt=prompt)
        with atomic_path(self.path(names['optimizer'])) as tmp:
            st_save_file(optimizer, tmp)
        atomic_write_json(self.path(names['state_json']), state)
        atomic_write_json(self.path('latest.json'), names)
        return info

    def prune(self):
        """Delete all but the last keep_last sets."""
        vs = sorted({n.split('_', 1)[1].split('.')[0] for n in os.listdir(self.out_dir)
                     if n.startswith(('ckpt_', 'optim_', 'state_')) and not n.endswith('.tmp')})
        for v in vs[:-self.keep_last]:
            for p in (f'ckpt_{v}.safetensors', f'optim_{v}.safetensors', f'state_{v}.json'):
                try:
                    os.unlink(self.path(p))
                except FileNotFoundError:
                    pass
