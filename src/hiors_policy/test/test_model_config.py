"""Config presets, validation and JSON round trip."""
import pytest
import torch

from hiors_policy.config import PRESETS, PolicyConfig, make_config
from hiors_policy.device import resolve_device
from hiors_policy.modeling import Pi0Policy


def test_presets_build_and_round_trip():
    assert set(PRESETS) == {'tiny', 'small', 'pi0'}
    assert PolicyConfig() == make_config('tiny')
    for name in PRESETS:
        c = make_config(name)
        assert PolicyConfig.from_json(c.to_json()) == c
        # 1 s predicted: pi0 at 50 Hz (0.4 s executed), the small presets at the sim's 10 Hz
        # (small 0.5 s executed; tiny re-plans every 0.4 s).
        want = {'pi0': (50, 20, 10), 'small': (10, 5, 10), 'tiny': (10, 4, 10)}[name]
        assert (c.chunk_size, c.n_action_steps, c.num_inference_steps) == want
        assert (c.max_state_dim, c.max_action_dim, c.state_dim, c.action_dim) == (32, 32, 7, 7)
        assert c.camera_names == ('front', 'wrist')
        assert (c.vision_tower, c.image_size) == (('keypoints', 96) if name == 'tiny' else ('siglip', 224))
        assert (c.time_beta_alpha, c.time_beta_beta) == (1.5, 1.0)


def test_pi0_preset_matches_paligemma_3b_plus_gemma_300m():
    c = make_config('pi0')
    assert c.num_image_tokens == 256 and c.vision_width == 1152 and c.vision_depth == 27
    assert (c.lm_width, c.lm_depth, c.lm_mlp_dim, c.head_dim) == (2048, 18, 16384, 256)
    assert (c.expert_width, c.expert_mlp_dim) == (1024, 4096)
    with torch.device('meta'):
        p = Pi0Policy(c)
    n = p.num_parameters()
    assert 3.1e9 < n < 3.4e9, n           # PaliGemma ~2.92B + expert ~0.31B + heads


def test_overrides_and_validation():
    assert make_config('tiny', n_action_steps=5).n_action_steps == 5
    with pytest.raises(ValueError, match='unknown policy preset'):
        make_config('huge')
    with pytest.raises(ValueError, match='unknown policy config overrides'):
        make_config('tiny', chunk=3)
    with pytest.raises(ValueError, match='n_action_steps'):
        make_config('tiny', n_action_steps=11)
    with pytest.raises(ValueError, match='divisible'):
        make_config('tiny', vision_tower='siglip', image_size=100)
    with pytest.raises(ValueError, match='dtype'):
        make_config('tiny', dtype='float64')
    with pytest.raises(ValueError, match='positive int'):
        make_config('tiny', chunk_size=0)
    with pytest.raises(ValueError, match='unknown policy config keys'):
        PolicyConfig.from_dict(dict(make_config('tiny').to_dict(), nope=1))
    with pytest.raises(ValueError, match='^policy config is not valid JSON: '):
        PolicyConfig.from_json('{')


def test_device_selection():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type in ('cpu', 'cuda')
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='CUDA is not available'):
            resolve_device('cuda')
    with pytest.raises(ValueError):
        resolve_device('tpu')


def test_inference_noise_scale_zero_gives_one_chunk_per_observation():
    from hiors_policy.synthetic import random_batch
    cfg = make_config('tiny', inference_noise_scale=0.0)
    policy = Pi0Policy(cfg).eval()
    batch = random_batch(cfg, 1, seed=3)
    with torch.no_grad():
        a, b = policy.sample_actions(batch), policy.sample_actions(batch)
        policy.config.inference_noise_scale = 1.0
        c = policy.sample_actions(batch)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match='inference_noise_scale'):
        make_config('tiny', inference_noise_scale=-1.0)
