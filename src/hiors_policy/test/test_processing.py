"""Processor: normalisation round trip, images, padding/masks, batches, tokenizers."""
import importlib.util

import numpy as np
import pytest
import torch

from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.processing import NormStats, PolicyProcessor, random_shift, resize_with_pad
from hiors_policy.synthetic import random_observation, random_samples
from hiors_policy.tokenizer import ByteTokenizer, make_tokenizer, tokenize_prompt

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def cfg():
    return make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=2)


@pytest.fixture(scope='module')
def stats():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(200, 7)) * np.arange(1, 8) + 3
    a = rng.normal(size=(200, 7)) * 0.1
    a[:, 6] = 0.04      # a joint that never moved: std floored, not zero
    return NormStats.from_arrays(s, a)


def test_norm_stats_json_round_trip_and_validation(stats):
    assert NormStats.from_json(stats.to_json()) == stats
    assert stats.action_std[6] > 0
    with pytest.raises(ValueError):
        NormStats.from_json('{"state_mean": [0]}')
    with pytest.raises(ValueError, match='^norm_stats is not valid JSON: '):
        NormStats.from_json('{')
    with pytest.raises(ValueError):
        NormStats(np.zeros(7), np.zeros(7), np.zeros(7), np.ones(7))     # std 0
    with pytest.raises(ValueError):
        NormStats.from_arrays(np.full((3, 7), np.nan), np.zeros((3, 7)))


def test_state_and_action_normalisation_round_trip(cfg, stats):
    proc = PolicyProcessor(cfg, stats)
    rng = np.random.default_rng(2)
    chunk = rng.normal(size=(cfg.chunk_size, 7))
    z = proc.normalize_actions(chunk)
    assert z.shape == (cfg.chunk_size, cfg.max_action_dim) and np.all(z[:, 7:] == 0)
    back = proc.unnormalize_actions(torch.from_numpy(z)[None])
    np.testing.assert_allclose(back, chunk, rtol=1e-5, atol=1e-5)
    s = proc.normalize_state(np.arange(7.0))
    assert s.shape == (cfg.max_state_dim,) and np.all(s[7:] == 0)
    np.testing.assert_allclose(s[:7], (np.arange(7.0) - stats.state_mean) / stats.state_std, rtol=1e-6)
    with pytest.raises(ValueError):
        proc.normalize_state(np.array([np.nan] * 7))
    with pytest.raises(ValueError):
        proc.normalize_state(np.zeros(6))
    with pytest.raises(ValueError):
        proc.unnormalize_actions(np.full((cfg.chunk_size, 32), np.inf))


def test_images_resized_scaled_and_masked(cfg):
    proc = PolicyProcessor(cfg)
    img = np.full((120, 240, 3), 255, np.uint8)
    r = resize_with_pad(img, 224)
    assert r.shape == (224, 224, 3) and r[0, 0, 0] == 0 and r[112, 112, 0] == 255   # letterboxed
    obs = proc.prepare_observation({'front': img}, np.zeros(7), 'pick')
    im = obs['images']
    S = cfg.image_size
    assert im.shape == (1, 2, 3, S, S) and im.dtype == torch.float32
    assert im.min() >= -1 and im.max() <= 1 and im[0, 0, :, S // 2, S // 2].eq(1).all()
    assert obs['image_masks'].tolist() == [[True, False]] and im[0, 1].eq(-1).all()
    with pytest.raises(ValueError, match='unknown cameras'):
        proc.prepare_observation({'top': img}, np.zeros(7), 'x')
    with pytest.raises(ValueError, match='uint8'):
        proc.prepare_observation({'front': img.astype(np.float32)}, np.zeros(7), 'x')
    with pytest.raises(ValueError, match='no camera'):
        proc.prepare_observation({}, np.zeros(7), 'x')


def test_byte_tokenizer_deterministic_and_truncates(cfg):
    tok = ByteTokenizer()
    ids, mask = tokenize_prompt(tok, 'insert peg', cfg.tokenizer_max_length)
    assert ids[0] == tok.bos_id and mask.sum() == 1 + len('insert peg\n')
    assert tok.decode(ids[mask][1:]) == 'insert peg\n'
    ids2, _ = tokenize_prompt(tok, 'insert peg', cfg.tokenizer_max_length)
    assert np.array_equal(ids, ids2)
    long_ids, long_mask = tokenize_prompt(tok, 'x' * 500, cfg.tokenizer_max_length)
    assert long_mask.all() and len(long_ids) == cfg.tokenizer_max_length
    assert ids.max() < cfg.vocab_size


def test_tokenizer_json_file_and_clear_errors(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    t = Tokenizer(models.WordLevel({'<pad>': 0, '<bos>': 1, '[UNK]': 2, 'insert': 3, 'peg': 4},
                                   unk_token='[UNK]'))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / 'tokenizer.json'
    t.save(str(path))
    tok = make_tokenizer(str(path))
    ids, mask = tokenize_prompt(tok, 'insert peg', 8)
    assert ids[:3].tolist() == [1, 3, 4] and mask.sum() == 3
    with pytest.raises(FileNotFoundError):
        make_tokenizer(str(tmp_path / 'missing.json'))
    with pytest.raises(ValueError, match='tokenizer file'):
        make_tokenizer('')
    if importlib.util.find_spec('sentencepiece') is None:
        sp = tmp_path / 'tok.model'
        sp.write_bytes(b'\0')
        with pytest.raises(RuntimeError, match='sentencepiece'):
            make_tokenizer(str(sp))


def test_prepare_batch_list_and_stacked_agree(cfg, stats):
    proc = PolicyProcessor(cfg, stats)
    samples = random_samples(cfg, 3, image_hw=(96, 128))
    samples[1]['action'] = samples[1]['action'][:5]          # episode end: short chunk
    b = proc.prepare_batch(samples)
    assert b['images'].shape == (3, 2, 3, cfg.image_size, cfg.image_size)
    assert b['action'].shape == (3, cfg.chunk_size, cfg.max_action_dim)
    assert b['action_mask'][1].tolist() == [True] * 5 + [False] * (cfg.chunk_size - 5)
    assert b['action_mask'][0].all() and b['action_dim_mask'][:, :7].all() and not b['action_dim_mask'][:, 7:].any()
    same = [dict(s) for s in random_samples(cfg, 3, image_hw=(96, 128))]
    stacked = {'images': {n: np.stack([s['images'][n] for s in same]) for n in cfg.camera_names},
               'state': np.stack([s['state'] for s in same]), 'prompt': same[0]['prompt'],
               'action': np.stack([s['action'] for s in same])}
    b2 = proc.prepare_batch(stacked)
    b1 = proc.prepare_batch(random_samples(cfg, 3, image_hw=(96, 128)))
    for k in b1:
        assert torch.equal(b1[k], b2[k]), k
    with pytest.raises(KeyError, match='sample 0'):
        proc.prepare_batch([{'images': samples[0]['images'], 'state': np.zeros(7)}])
    with pytest.raises(ValueError, match='sample 0'):
        proc.prepare_batch([dict(samples[0], action=np.zeros((cfg.chunk_size + 1, 7)))])


def test_processor_feeds_the_model_end_to_end(cfg, stats):
    proc = PolicyProcessor(cfg, stats)
    torch.manual_seed(0)
    p = Pi0Policy(cfg)
    loss = p.compute_loss(proc.prepare_batch(random_samples(cfg, 2)))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    images, state, prompt = random_observation(cfg)
    chunk = proc.unnormalize_actions(p.sample_actions(proc.prepare_observation(images, state, prompt)))
    assert chunk.shape == (cfg.chunk_size, 7) and np.all(np.isfinite(chunk))


def test_processor_rejects_mismatched_stats(cfg):
    with pytest.raises(ValueError, match='state dim'):
        PolicyProcessor(cfg, NormStats.identity(6, 7))


def test_random_shift_crops_edge_padded_windows():
    g = torch.Generator().manual_seed(0)
    images = torch.rand((6, 2, 3, 12, 12), generator=g) * 2 - 1
    assert random_shift(images, 0, np.random.default_rng(0)) is images
    out = random_shift(images, 3, np.random.default_rng(1))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images.reshape(12, 3, 12, 12), (3, 3, 3, 3), mode='replicate')
    shifts = []
    for i, (src, img) in enumerate(zip(padded, out.reshape(12, 3, 12, 12))):
        # each output image is one 12x12 window of its own padded image
        found = [(y, x) for y in range(7) for x in range(7) if torch.equal(src[:, y:y + 12, x:x + 12], img)]
        assert found, f'image {i} is not a window of its padded input'
        shifts.append(found[0])
    assert len(set(shifts)) > 1                  # offsets drawn per image, not one for the batch
    assert (out >= -1).all() and (out <= 1).all()
