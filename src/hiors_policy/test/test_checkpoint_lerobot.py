"""LeRobot pi0 layout: export -> import bit-exact, key naming, clear errors."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hiors_policy.checkpoint import CheckpointError
from hiors_policy.config import make_config
from hiors_policy.lerobot_layout import (config_from_lerobot, export_lerobot, from_lerobot_key,
                                         import_lerobot, to_lerobot_key)
from hiors_policy.modeling import Pi0Policy
from hiors_policy.processing import NormStats
from hiors_policy.synthetic import random_batch

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def cfg():
    return make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=2)


@pytest.fixture(scope='module')
def policy(cfg):
    torch.manual_seed(0)
    return Pi0Policy(cfg).eval()


def test_key_names_follow_lerobot():
    assert to_lerobot_key('lm.layers.3.self_attn.q_proj.weight') == \
        'model.paligemma_with_expert.paligemma.model.language_model.layers.3.self_attn.q_proj.weight'
    assert to_lerobot_key('expert.layers.0.mlp.up_proj.weight') == \
        'model.paligemma_with_expert.gemma_expert.model.layers.0.mlp.up_proj.weight'
    assert to_lerobot_key('vision.encoder.layers.1.mlp.fc1.bias') == \
        'model.paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias'
    assert to_lerobot_key('projector.weight') == \
        'model.paligemma_with_expert.paligemma.model.multi_modal_projector.linear.weight'
    assert to_lerobot_key('action_time_mlp_in.weight') == 'model.action_time_mlp_in.weight'
    # openpi export without the 'model.' prefix, and the older transformers layout
    assert from_lerobot_key('paligemma_with_expert.gemma_expert.model.norm.weight') == 'expert.norm.weight'
    assert from_lerobot_key('model.paligemma_with_expert.paligemma.language_model.model.layers.0.'
                            'input_layernorm.weight') == 'lm.layers.0.input_layernorm.weight'
    assert from_lerobot_key('model.paligemma_with_expert.paligemma.lm_head.weight') is None


def test_export_import_bit_exact(tmp_path, cfg, policy):
    ns = NormStats.identity()
    out = export_lerobot(policy, tmp_path / 'pi0', norm_stats=ns)
    keys = set(load_file(str(out / 'model.safetensors')))
    assert 'model.state_proj.weight' in keys and 'model.paligemma_with_expert.paligemma.lm_head.weight' in keys
    cj = json.loads((out / 'config.json').read_text())
    assert cj['type'] == 'pi0' and cj['chunk_size'] == cfg.chunk_size
    p2, c2, ns2 = import_lerobot(out)
    assert c2 == cfg and ns2 == ns
    sa, sb = policy.state_dict(), p2.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    b = random_batch(cfg, 1)
    noise = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    assert torch.equal(policy.sample_actions(b, noise=noise), p2.sample_actions(b, noise=noise))


def test_import_without_model_prefix_and_embed_from_lm_head(tmp_path, cfg, policy):
    out = export_lerobot(policy, tmp_path / 'a')
    sd = load_file(str(out / 'model.safetensors'))
    # openpi style: no 'model.' prefix; embed_tokens only present as the tied lm_head
    sd = {k[len('model.'):]: v for k, v in sd.items()
          if not k.endswith('language_model.embed_tokens.weight')}
    save_file(sd, str(out / 'model.safetensors'))
    p2, _, _ = import_lerobot(out)
    assert torch.equal(p2.lm.embed_tokens.weight, policy.lm.embed_tokens.weight)


def _mutate(tmp_path, policy, fn, name):
    out = export_lerobot(policy, tmp_path / name)
    sd = load_file(str(out / 'model.safetensors'))
    fn(sd)
    save_file(sd, str(out / 'model.safetensors'))
    return out


def test_import_errors(tmp_path, cfg, policy):
    with pytest.raises(CheckpointError, match='model.safetensors'):
        import_lerobot(tmp_path / 'empty')
    k = 'model.paligemma_with_expert.gemma_expert.model.layers.0.mlp.up_proj.weight'
    out = _mutate(tmp_path, policy, lambda sd: sd.pop(k), 'missing')
    with pytest.raises(CheckpointError, match='missing'):
        import_lerobot(out)
    out = _mutate(tmp_path, policy, lambda sd: sd.update({'model.foo.weight': torch.zeros(2)}), 'extra')
    with pytest.raises(CheckpointError, match='not in the pi0 layout'):
        import_lerobot(out)
    out = _mutate(tmp_path, policy, lambda sd: sd.update({k: torch.zeros(3, 3)}), 'shape')
    with pytest.raises(CheckpointError, match='shape mismatch'):
        import_lerobot(out)
    out = export_lerobot(policy, tmp_path / 'badcfg')
    (out / 'config.json').write_text('{nope')
    with pytest.raises(CheckpointError, match='invalid JSON'):
        import_lerobot(out)
    (out / 'config.json').write_text(json.dumps({'type': 'act'}))
    with pytest.raises(CheckpointError, match='not .pi0'):
        import_lerobot(out)
    # an upstream-style config.json (no hiors_config) means real pi0 sizes: the tiny weights mismatch
    (out / 'config.json').write_text(json.dumps({'type': 'pi0', 'chunk_size': 16, 'n_action_steps': 8}))
    with pytest.raises(CheckpointError, match='keys do not match'):
        import_lerobot(out)


def test_upstream_config_json_maps_to_pi0_preset():
    c = config_from_lerobot({'type': 'pi0', 'chunk_size': 50, 'n_action_steps': 50, 'num_steps': 10,
                             'tokenizer_max_length': 48, 'resize_imgs_with_padding': [224, 224],
                             'max_state_dim': 32, 'max_action_dim': 32})
    assert c.lm_width == 2048 and c.expert_width == 1024 and c.head_dim == 256 and c.vision_patch_size == 14
    assert c.n_action_steps == 50
    with pytest.raises(CheckpointError, match='gemma_2b'):
        config_from_lerobot({'type': 'pi0', 'paligemma_variant': 'gemma_7b'})


def test_import_legacy_transformers_layout(tmp_path, cfg, policy):
    out = export_lerobot(policy, tmp_path / 'legacy')
    sd = load_file(str(out / 'model.safetensors'))
    pwe = 'model.paligemma_with_expert.paligemma.'
    ren = {pwe + 'model.vision_tower.': pwe + 'vision_tower.',
           pwe + 'model.multi_modal_projector.': pwe + 'multi_modal_projector.',
           pwe + 'model.language_model.': pwe + 'language_model.model.',
           pwe + 'lm_head.': pwe + 'language_model.lm_head.'}
    legacy = {}
    for k, v in sd.items():
        for a, b in ren.items():
            if k.startswith(a):
                k = b + k[len(a):]
                break
        legacy[k] = v
    assert any('language_model.model.layers' in k for k in legacy)
    save_file(legacy, str(out / 'model.safetensors'))
    p2, _, _ = import_lerobot(out)
    sa, sb = policy.state_dict(), p2.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
