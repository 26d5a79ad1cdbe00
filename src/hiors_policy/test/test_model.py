"""Model semantics: attention mask, padding, flow-matching loss, sample weights, KV cache."""
import copy

import pytest
import torch

from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy, make_att_2d_masks
from hiors_policy.synthetic import random_batch

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def cfg():
    # Shorter chunk keeps the suite fast; same architecture as the default tiny preset.
    return make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=4)


@pytest.fixture(scope='module')
def policy(cfg):
    torch.manual_seed(0)
    p = Pi0Policy(cfg)
    # Non-zero norm weights so a broken mask cannot hide behind symmetric init.
    with torch.no_grad():
        for n, prm in p.named_parameters():
            if 'layernorm' in n or n.endswith('norm.weight'):
                prm.normal_(0, 0.1)
    return p.eval()


def test_make_att_2d_masks_semantics():
    # prefix of 3 (last one padded), state (block start), 2 actions (block start, same block)
    pad = torch.tensor([[1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    blocks = torch.tensor([[0, 0, 0, 1, 1, 0]])
    m = make_att_2d_masks(pad, blocks)[0]
    P, S, A = [0, 1], 3, [4, 5]
    for i in P:                       # prefix: bidirectional among real prefix tokens only
        assert m[i, P].all() and not m[i, S] and not m[i, A].any()
    assert m[S, P].all() and m[S, S] and not m[S, A].any()   # state: prefix + itself
    for i in A:                       # actions: everything real
        assert m[i, P].all() and m[i, S] and m[i, A].all()
    assert not m[:, 2].any() and not m[2, :].any()            # padded token: nobody, nothing


def _suffix_out(p, b, x_t, t):
    pe, pp, pb = p.embed_prefix(b)
    se, sp, sb = p.embed_suffix(b['state'], x_t, t)
    pad = torch.cat([pp, sp], 1)
    mask = p._self_attend_safe(make_att_2d_masks(pad, torch.cat([pb, sb], 1)))
    out, _ = p._layers(pe, se, p._attention_inputs(mask, torch.cumsum(pad.long(), 1) - 1))
    return out


def test_mask_behaviour_in_model(cfg, policy):
    b = policy._prepare(random_batch(cfg, 1, seed=1), need_action=False)
    t = torch.tensor([0.5])
    x1 = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    x2 = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    with torch.no_grad():
        o1, o2 = _suffix_out(policy, b, x1, t), _suffix_out(policy, b, x2, t)
        # state token does not see the action tokens; action tokens do
        assert torch.allclose(o1[:, 0], o2[:, 0], atol=1e-6)
        assert not torch.allclose(o1[:, 1:], o2[:, 1:], atol=1e-4)
        # prefix does not see the suffix: its K/V cache is independent of state
        kv_a, _ = policy.encode_prefix(b)
        b2 = dict(b, state=b['state'] + 1.0)
        kv_b, _ = policy.encode_prefix(b2)
        assert all(torch.equal(a[0], c[0]) for a, c in zip(kv_a, kv_b))
        # the suffix does see the prefix (prompt change moves the actions)
        b3 = dict(b, lang_tokens=b['lang_tokens'].clone())
        b3['lang_tokens'][0, 1] = (b3['lang_tokens'][0, 1] + 7) % cfg.vocab_size
        assert not torch.allclose(o1, _suffix_out(policy, b3, x1, t), atol=1e-4)


def test_padding_is_ignored(cfg, policy):
    b = random_batch(cfg, 1, seed=2, lang_len=6)
    noise = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    ref = policy.sample_actions(b, noise=noise)
    # padded prompt tokens
    b2 = copy.deepcopy(b)
    b2['lang_tokens'][0, 10:] = 99
    assert torch.allclose(policy.sample_actions(b2, noise=noise), ref, atol=1e-5)
    # a missing camera's pixels do not matter
    b3 = copy.deepcopy(b)
    b3['image_masks'][0, 1] = False
    r3 = policy.sample_actions(b3, noise=noise)
    b3['images'][0, 1] = torch.rand_like(b3['images'][0, 1])
    assert torch.allclose(policy.sample_actions(b3, noise=noise), r3, atol=1e-5)
    assert not torch.allclose(r3, ref, atol=1e-4)      # ... but masking it changes the result


def test_loss_masks_steps_and_dims(cfg, policy):
    b = random_batch(cfg, 2, seed=3)
    b['action_mask'][1, 10:] = False
    noise = torch.randn(2, cfg.chunk_size, cfg.max_action_dim)
    t = torch.tensor([0.3, 0.8])
    loss = policy.compute_loss(b, noise=noise, time=t)
    with torch.no_grad():
        pb = policy._prepare(b, need_action=True)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * pb['action']
        v = policy.velocity(pb, x_t, t)
    err = (v - (noise - pb['action'])) ** 2
    manual0 = err[0, :, :cfg.action_dim].mean()
    manual1 = err[1, :10, :cfg.action_dim].mean()
    assert torch.allclose(loss, torch.stack([manual0, manual1]), rtol=1e-5, atol=1e-6)
    # counting padded dims would give a different number (the mask matters)
    assert not torch.allclose(loss[0], err[0].mean(), rtol=1e-3)


def test_loss_decreases_on_fixed_batch(cfg):
    torch.manual_seed(1)
    p = Pi0Policy(cfg).train()
    b = random_batch(cfg, 2, seed=4)
    noise = torch.randn(2, cfg.chunk_size, cfg.max_action_dim)
    t = torch.tensor([0.4, 0.7])
    opt = torch.optim.AdamW(p.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = p.compute_loss(b, noise=noise, time=t).mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def _grads(p):
    return {n: (q.grad.clone() if q.grad is not None else torch.zeros_like(q)) for n, q in p.named_parameters()}


def test_sample_weight_zero_gives_zero_loss_and_gradient(cfg, policy):
    p = copy.deepcopy(policy).train()
    b = random_batch(cfg, 2, seed=5)
    noise = torch.randn(2, cfg.chunk_size, cfg.max_action_dim)
    t = torch.tensor([0.5, 0.6])
    w = torch.tensor([1.0, 0.0])
    loss = p.compute_loss(b, noise=noise, time=t, sample_weight=w)
    assert loss[1].item() == 0.0 and loss[0].item() > 0
    p.zero_grad()
    loss.sum().backward()
    g1 = _grads(p)
    # replace sample 1 entirely: with weight 0 the gradient must not change
    b2 = copy.deepcopy(b)
    b2['action'][1] = torch.randn_like(b2['action'][1]) * 5
    b2['state'][1] = torch.randn_like(b2['state'][1])
    p.zero_grad()
    p.compute_loss(b2, noise=noise, time=t, sample_weight=w).sum().backward()
    g2 = _grads(p)
    assert all(torch.allclose(g1[k], g2[k], atol=1e-7) for k in g1)
    assert any(g1[k].abs().sum() > 0 for k in g1)
    # weights scale the loss
    l2 = p.compute_loss(b, noise=noise, time=t, sample_weight=torch.tensor([2.0, 1.0]))
    base = p.compute_loss(b, noise=noise, time=t)
    assert torch.allclose(l2, base * torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError):
        p.compute_loss(b, sample_weight=torch.ones(3))


def test_kv_cache_matches_uncached(cfg, policy):
    b = random_batch(cfg, 2, seed=6)
    b['lang_masks'][1, 4:] = False          # different prompt lengths in one batch
    b['image_masks'][1, 0] = False          # and a missing camera
    noise = torch.randn(2, cfg.chunk_size, cfg.max_action_dim)
    cached = policy.sample_actions(b, noise=noise, use_kv_cache=True)
    uncached = policy.sample_actions(b, noise=noise, use_kv_cache=False)
    assert cached.shape == (2, cfg.chunk_size, cfg.max_action_dim)
    assert torch.allclose(cached, uncached, atol=1e-5), (cached - uncached).abs().max()
    # batch rows are independent: row 0 alone gives the same chunk
    one = policy.sample_actions({k: v[:1] for k, v in b.items()}, noise=noise[:1])
    assert torch.allclose(one, cached[:1], atol=1e-5)


def test_sampling_is_deterministic_given_noise_and_uses_steps(cfg, policy):
    b = random_batch(cfg, 1, seed=7)
    noise = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    a = policy.sample_actions(b, noise=noise)
    assert torch.equal(a, policy.sample_actions(b, noise=noise))
    assert not torch.allclose(a, policy.sample_actions(b, noise=noise, num_steps=1), atol=1e-4)


def test_bad_batches_raise(cfg, policy):
    b = random_batch(cfg, 1)
    with pytest.raises(KeyError):
        policy.sample_actions({k: v for k, v in b.items() if k != 'state'})
    with pytest.raises(ValueError):
        policy.sample_actions(dict(b, state=torch.zeros(1, 5)))
    with pytest.raises(ValueError):
        policy.sample_actions(dict(b, images=b['images'][:, :1]))
    with pytest.raises(ValueError):
        policy.compute_loss(dict(b, action=torch.zeros(1, 3, cfg.max_action_dim)))
    with pytest.raises(ValueError):
        policy.sample_actions(dict(b, lang_tokens=b['lang_tokens'] + cfg.vocab_size))


def test_bf16_autocast_path(cfg):
    c = make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=2, dtype='bfloat16')
    torch.manual_seed(0)
    p = Pi0Policy(c)
    b = random_batch(c, 2, seed=8)
    loss = p.compute_loss(b)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(q.grad is None or q.grad.dtype == torch.float32 for q in p.parameters())
    a = p.sample_actions(b)
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    # pure bf16 weights (GPU inference setting) also run and stay close to the fp32-weight result
    noise = torch.randn(2, c.chunk_size, c.max_action_dim)
    ref = p.sample_actions(b, noise=noise)
    p16 = copy.deepcopy(p).to(torch.bfloat16)
    a16 = p16.sample_actions(b, noise=noise)
    assert a16.dtype == torch.float32 and torch.isfinite(a16).all()
    assert (a16 - ref).abs().mean() < 0.1 * ref.abs().mean()
    assert torch.isfinite(p16.compute_loss(b)).all()


def test_empty_construction_restores_buffers(cfg, policy):
    e = Pi0Policy.empty(cfg)
    e.load_state_dict(policy.state_dict(), strict=True)
    b = random_batch(cfg, 1, seed=9)
    noise = torch.randn(1, cfg.chunk_size, cfg.max_action_dim)
    assert torch.equal(e.sample_actions(b, noise=noise), policy.sample_actions(b, noise=noise))


def test_overfit_then_sample_recovers_each_samples_chunk():
    """End-to-end check of the flow-matching convention: after fitting 4 (observation, chunk)
    pairs, Euler sampling from noise lands on the chunk of the matching observation."""
    c = make_config('tiny', chunk_size=16, n_action_steps=8, num_inference_steps=10)
    torch.manual_seed(0)
    p = Pi0Policy(c)
    b = random_batch(c, 4, seed=0)
    tt = torch.linspace(0, 1, c.chunk_size)
    for i in range(4):
        for d in range(c.action_dim):
            b['action'][i, :, d] = torch.sin(2 * tt * (d + 1) + i) * (1 + 0.2 * i)
    opt = torch.optim.AdamW(p.parameters(), lr=3e-3)
    for _ in range(160):
        loss = p.compute_loss(b).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(p.parameters(), 1.0)
        opt.step()
    p.eval()
    a = p.sample_actions({k: v for k, v in b.items() if k != 'action'})[:, :, :c.action_dim]
    target = b['action'][:, :, :c.action_dim]
    err = (a[:, None] - target[None]).abs().mean(dim=(2, 3))      # err[i, j]: sample i vs target j
    scale = target.abs().mean()
    assert err.diagonal().mean() < 0.4 * scale, (err, scale)
    for i in range(4):
        others = torch.cat([err[i, :i], err[i, i + 1:]])
        assert err[i, i] < others.min(), err


def test_gradient_checkpointing_same_loss_and_grads(cfg):
    torch.manual_seed(2)
    p = Pi0Policy(cfg).train()
    b = random_batch(cfg, 2, seed=10)
    noise = torch.randn(2, cfg.chunk_size, cfg.max_action_dim)
    t = torch.tensor([0.2, 0.9])
    p.compute_loss(b, noise=noise, time=t).sum().backward()
    g0 = _grads(p)
    p.zero_grad()
    p.gradient_checkpointing = True
    p.compute_loss(b, noise=noise, time=t).sum().backward()
    g1 = _grads(p)
    assert all(torch.allclose(g0[k], g1[k], atol=1e-6) for k in g0)


def test_set_trainable(cfg):
    p = Pi0Policy(cfg)
    n_all = len(list(p.parameters()))
    assert len(p.set_trainable()) == n_all
    params = p.set_trainable(freeze_vision_encoder=True)
    assert not any(q.requires_grad for q in p.vision.parameters()) and p.lm.layers[0].mlp.up_proj.weight.requires_grad
    params = p.set_trainable(train_expert_only=True)
    assert not any(q.requires_grad for q in p.lm.parameters()) and p.state_proj.weight.requires_grad
    assert {id(q) for q in params} == {id(q) for q in p.parameters() if q.requires_grad}
    p.set_trainable()
    loss = p.compute_loss(random_batch(cfg, 1))
    loss.sum().backward()


def test_layer_math_matches_transformers_gemma(cfg):
    """Our joint-layer loop, run on one stream, equals transformers' GemmaModel forward with the
    same weights, mask and positions (norms, RoPE, GQA, MLP) — what real pi0 weights expect."""
    from transformers import GemmaModel
    torch.manual_seed(0)
    p = Pi0Policy(cfg).eval()
    with torch.no_grad():
        for n, q in p.named_parameters():
            if 'norm' in n:
                q.normal_(0, 0.2)
    ref = GemmaModel(p.expert.config).eval()
    missing, unexpected = ref.load_state_dict(p.expert.state_dict(), strict=False)
    assert missing == ['embed_tokens.weight'] and not unexpected
    B, L = 2, cfg.chunk_size + 1
    x = torch.randn(B, L, cfg.expert_width)
    pad = torch.ones(B, L, dtype=torch.bool)
    blk = torch.zeros(B, L, dtype=torch.long)
    blk[:, :2] = 1
    m = make_att_2d_masks(pad, blk)
    pos = torch.arange(L)[None].expand(B, -1) + 5
    with torch.no_grad():
        mine, _ = p._layers(None, x, p._attention_inputs(m, pos))
        theirs = ref(inputs_embeds=x, attention_mask=m[:, None], position_ids=pos).last_hidden_state
    assert torch.allclose(mine, theirs, atol=1e-5), (mine - theirs).abs().max()


def test_spatial_softmax_finds_the_peak():
    """A map with one sharp peak yields that cell's (x, y) in [-1, 1] (x = column)."""
    from hiors_policy.keypoints import SpatialSoftmax
    ss = SpatialSoftmax()
    maps = torch.full((1, 2, 5, 9), -50.0)
    maps[0, 0, 1, 6] = 50.0       # row 1 of 5 -> y = -0.5; column 6 of 9 -> x = 0.5
    maps[0, 1, 4, 0] = 50.0       # bottom-left corner
    kp = ss(maps)
    assert torch.allclose(kp[0, 0], torch.tensor([0.5, -0.5]), atol=1e-4)
    assert torch.allclose(kp[0, 1], torch.tensor([-1.0, 1.0]), atol=1e-4)


def test_keypoint_tower_tokens_and_training():
    """The keypoint tower gives K+1 tokens per camera, follows an object in the image, and the
    VLA built on it trains and samples like the SigLIP one."""
    c = make_config('tiny', vision_tower='keypoints', vision_keypoints=8, vision_width=8,
                    image_size=32, chunk_size=4, n_action_steps=2, num_inference_steps=2)
    assert c.num_image_tokens == 9
    torch.manual_seed(0)
    p = Pi0Policy(c)
    b = random_batch(c, 2, seed=0)
    emb, pad, _ = p.embed_prefix(p._prepare(b, need_action=False))
    assert emb.shape == (2, 2 * 9 + c.tokenizer_max_length, c.lm_width)
    # Moving a bright square moves the keypoints (they are coordinates, not pooled features).
    img = torch.full((2, 3, 32, 32), -1.0)
    img[0, :, 4:8, 4:8] = 1.0
    img[1, :, 24:28, 24:28] = 1.0
    kp = p.vision.softmax(p.vision.to_maps(p.vision.convs(img)))
    assert (kp[0] - kp[1]).abs().max() > 1e-3
    opt = torch.optim.AdamW(p.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = p.compute_loss(b, noise=torch.zeros(2, 4, c.max_action_dim), time=0.5).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert torch.isfinite(p.eval().sample_actions({k: v for k, v in b.items() if k != 'action'})).all()
    with pytest.raises(ValueError, match='vision_tower'):
        make_config('tiny', vision_tower='resnet')


def test_noise_samples_equal_the_mean_of_single_draws(cfg, policy):
    """N draws per observation through the reused prefix K/V give exactly the mean of N ordinary
    losses with the same noise and times; gradients flow into the vision tower too."""
    B, n = 3, 4
    b = random_batch(cfg, B, seed=5)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(B * n, cfg.chunk_size, cfg.max_action_dim, generator=g)
    t = torch.rand(B * n, generator=g) * 0.9 + 0.05
    multi = policy.compute_loss(b, noise=noise, time=t, noise_samples=n)
    singles = torch.stack([policy.compute_loss(b, noise=noise[j::n], time=t[j::n]) for j in range(n)])
    assert torch.allclose(multi, singles.mean(dim=0), rtol=1e-4, atol=1e-6)
    p = copy.deepcopy(policy).train()
    p.compute_loss(b, noise_samples=n).mean().backward()
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in p.vision.parameters())
    with pytest.raises(ValueError, match='noise_samples'):
        policy.compute_loss(b, noise_samples=0)
