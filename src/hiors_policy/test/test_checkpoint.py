"""Checkpoint file: bit-exact round trip, hot swap, and clear errors on bad files."""
import json
import os
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from hiors_policy.checkpoint import (FORMAT, CheckpointError, checkpoint_bytes, load_checkpoint,
                                     load_state_into, read_metadata, save_checkpoint, sha256_of)
from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.processing import NormStats
from hiors_policy.synthetic import random_batch

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def cfg():
    return make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=3)


@pytest.fixture(scope='module')
def policy(cfg):
    torch.manual_seed(0)
    return Pi0Policy(cfg).eval()


@pytest.fixture(scope='module')
def stats():
    rng = np.random.default_rng(0)
    return NormStats.from_arrays(rng.normal(size=(50, 7)), rng.normal(size=(50, 7)) * 3)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_file_bit_exact(tmp_path, cfg, policy, stats):
    info = save_checkpoint(tmp_path / 'ck.safetensors', policy, cfg, stats, '000042')
    assert info['format'] == FORMAT and info['size'] == os.path.getsize(info['path'])
    assert info['sha256'] == sha256_of(info['path'])
    assert [p.name for p in tmp_path.iterdir()] == ['ck.safetensors']      # no temp files left
    p2, c2, s2, v = load_checkpoint(info['path'])
    assert c2 == cfg and s2 == stats and v == '000042'
    assert _same_weights(policy, p2) and not p2.training
    b = random_batch(cfg, 1)
    noise = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    assert torch.equal(policy.sample_actions(b, noise=noise), p2.sample_actions(b, noise=noise))


def test_round_trip_bytes_and_overwrite(tmp_path, cfg, policy, stats):
    data = checkpoint_bytes(policy, cfg, stats, 7)
    p2, _, _, v = load_checkpoint(data)
    assert v == '7' and _same_weights(policy, p2)
    # overwriting an existing file replaces it atomically with the new version
    path = tmp_path / 'ck.safetensors'
    save_checkpoint(path, policy, cfg, stats, 'a')
    save_checkpoint(path, policy, cfg, stats, 'b')
    assert read_metadata(path)[2] == 'b'


def test_bf16_checkpoint_loads_close(cfg, policy, stats):
    data = checkpoint_bytes(policy, cfg, stats, 1, dtype='bfloat16')
    assert len(data) < 0.6 * len(checkpoint_bytes(policy, cfg, stats, 1))
    p2, *_ = load_checkpoint(data)
    for k, v in policy.state_dict().items():
        assert torch.allclose(v, p2.state_dict()[k].float(), rtol=1e-2, atol=1e-2)


def test_hot_swap_in_place(cfg, policy, stats):
    torch.manual_seed(123)
    other = Pi0Policy(cfg).eval()
    assert not _same_weights(policy, other)
    ptrs = [p.data_ptr() for p in other.parameters()]
    c, s, v = load_state_into(other, checkpoint_bytes(policy, cfg, stats, '9'))
    assert v == '9' and s == stats and c == cfg
    assert _same_weights(policy, other)
    assert ptrs == [p.data_ptr() for p in other.parameters()]      # same tensors, new values
    # runtime-only fields may differ (e.g. a different number of Euler steps)
    c_rt = make_config('tiny', chunk_size=16, n_action_steps=4, num_inference_steps=7)
    load_state_into(other, checkpoint_bytes(policy, c_rt, stats, '10'))
    # ... or a training-only setting (the backbone's lr scale leaves the weights' layout as is)
    c_lr = make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=3, vision_backbone_lr_scale=0.5)
    load_state_into(other, checkpoint_bytes(policy, c_lr, stats, '11'))


def _tampered(cfg, policy, stats, fn, meta=None):
    sd = {k: v.clone() for k, v in policy.state_dict().items()}
    fn(sd)
    m = {'format': FORMAT, 'config': cfg.to_json(), 'norm_stats': stats.to_json(), 'version': '1'}
    if meta is not None:
        meta(m)
    return st_save(sd, metadata=m)


@pytest.mark.parametrize('case,match', [
    ('truncated', 'truncated'),
    ('garbage', 'not|corrupt|truncated'),
    ('empty', 'not a safetensors'),
    ('trailing', 'trailing'),
    ('bad_json_header', 'not valid JSON'),
    ('no_metadata', 'no metadata'),
    ('wrong_format', 'format'),
    ('missing_version', "missing 'version'"),
    ('bad_config', 'bad config'),
    ('unknown_config_key', 'unknown policy config keys'),
    ('bad_norm_stats', 'bad norm_stats'),
    ('extra_key', 'extra'),
    ('missing_key', 'missing'),
    ('shape_mismatch', 'shape mismatch'),
    ('nan_weight', 'NaN'),
])
def test_bad_files_raise_clear_errors(cfg, policy, stats, case, match):
    good = checkpoint_bytes(policy, cfg, stats, 1)
    first = next(iter(policy.state_dict()))
    if case == 'truncated':
        data = good[:len(good) // 2]
    elif case == 'garbage':
        data = os.urandom(4096)
    elif case == 'empty':
        data = b''
    elif case == 'trailing':
        data = good + b'\0' * 16
    elif case == 'bad_json_header':
        data = struct.pack('<Q', 10) + b'{not json!' + b'\0' * 10
    elif case == 'no_metadata':
        data = st_save({k: v.contiguous() for k, v in policy.state_dict().items()})
    elif case == 'wrong_format':
        data = _tampered(cfg, policy, stats, lambda sd: None, lambda m: m.update(format='other-v9'))
    elif case == 'missing_version':
        data = _tampered(cfg, policy, stats, lambda sd: None, lambda m: m.pop('version'))
    elif case == 'bad_config':
        data = _tampered(cfg, policy, stats, lambda sd: None, lambda m: m.update(config='{oops'))
    elif case == 'unknown_config_key':
        data = _tampered(cfg, policy, stats, lambda sd: None,
                         lambda m: m.update(config=json.dumps(dict(cfg.to_dict(), bogus=1))))
    elif case == 'bad_norm_stats':
        data = _tampered(cfg, policy, stats, lambda sd: None,
                         lambda m: m.update(norm_stats=json.dumps({'state_mean': [0.0]})))
    elif case == 'extra_key':
        data = _tampered(cfg, policy, stats, lambda sd: sd.update(surprise=torch.zeros(3)))
    elif case == 'missing_key':
        data = _tampered(cfg, policy, stats, lambda sd: sd.pop(first))
    elif case == 'shape_mismatch':
        data = _tampered(cfg, policy, stats, lambda sd: sd.update(
            {'state_proj.weight': torch.zeros(cfg.expert_width, cfg.max_state_dim + 1)}))
    elif case == 'nan_weight':
        data = _tampered(cfg, policy, stats, lambda sd: sd['action_out_proj.bias'].fill_(float('nan')))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(data)


def test_bad_file_on_disk(tmp_path, cfg, policy, stats):
    path = tmp_path / 'ck.safetensors'
    save_checkpoint(path, policy, cfg, stats, '1')
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(CheckpointError, match='truncated'):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.safetensors')


def test_hot_swap_rejects_other_architecture_and_leaves_model_untouched(cfg, policy, stats):
    torch.manual_seed(5)
    target = Pi0Policy(cfg).eval()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    wider = make_config('tiny', chunk_size=16, n_action_steps=8, lm_mlp_dim=96)
    torch.manual_seed(6)
    with pytest.raises(CheckpointError, match='lm_mlp_dim'):
        load_state_into(target, checkpoint_bytes(Pi0Policy(wider), wider, stats, 2))
    other_h = make_config('tiny', chunk_size=20, n_action_steps=8)
    with pytest.raises(CheckpointError, match='chunk_size'):
        load_state_into(target, checkpoint_bytes(Pi0Policy(other_h), other_h, stats, 3))
    bad = _tampered(cfg, policy, stats, lambda sd: sd['action_out_proj.weight'].fill_(float('inf')))
    with pytest.raises(CheckpointError, match='NaN'):
        load_state_into(target, bad)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
