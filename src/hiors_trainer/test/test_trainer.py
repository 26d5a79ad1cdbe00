"""Trainer core on real recorded episodes (recorder's synthetic writer -> MCAP bags), real torch
training: the Hi-ORS loss, corrupt episodes, checkpoints (atomic, sha256, signed), kill -9 resume."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from hiors_common.signing import sha256_file
from hiors_policy.checkpoint import load_checkpoint
from hiors_policy.checkpoint_transport import TransportError, build_manifest, verify_and_fetch
from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.synthetic import random_batch
from hiors_recorder.dataset import load_episode
from hiors_recorder.synthetic import write_synthetic_episode
from hiors_trainer.core import Trainer, TrainerConfig, cosine_lr, hiors_loss

torch.set_num_threads(1)


def write_eps(root, outcomes, start=0):
    for i, o in enumerate(outcomes):
        write_synthetic_episode(str(root), steps=24, outcome=o, seed=start + i,
                                start_ns=int(1e18) + (start + i) * int(1e10))


@pytest.fixture(scope='module')
def eps(tmp_path_factory):
    root = tmp_path_factory.mktemp('eps')
    write_eps(root, ['success', 'success', 'failure', 'abort'])
    return root


def cfg(eps, out, **kw):
    # Every step kept (pre_takeover_steps 0) so the sample counts below are the paper's
    # sampling alone; the pre-takeover drop has its own tests (test_sampling.py).
    base = dict(episode_dir=str(eps), out_dir=str(out), batch_size=4, replan_stride=4,
                pre_takeover_steps=0, checkpoint_every_steps=2, intake_interval_s=0.2)
    base.update(kw)
    return TrainerConfig(**base)


def test_loss_is_flow_matching_on_accepted_and_zero_on_rejected():
    torch.manual_seed(0)
    c = make_config('tiny')
    p = Pi0Policy(c)
    b = random_batch(c, 4)
    noise = torch.randn(4, c.chunk_size, c.max_action_dim)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    plain = p.compute_loss(b, noise=noise, time=t)
    ind = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = hiors_loss(p, b, ind, noise=noise, time=t)
    assert torch.allclose(loss, (plain[0] + plain[2]) / 4, rtol=1e-5)
    assert plain[1].item() > 0
    zero = hiors_loss(p, b, torch.zeros(4), noise=noise, time=t)
    assert zero.item() == 0.0
    zero.backward()
    assert all(float(x.grad.abs().max()) == 0.0 for x in p.parameters() if x.grad is not None)


def test_cosine_schedule_paper_defaults():
    lr = lambda s: cosine_lr(s, 2.5e-5, 2.5e-6, 100, 500)  # noqa: E731
    assert lr(0) == pytest.approx(2.5e-5 / 101)
    assert lr(100) == pytest.approx(2.5e-5)
    assert lr(350) == pytest.approx((2.5e-5 + 2.5e-6) / 2)
    assert lr(600) == pytest.approx(2.5e-6) and lr(5000) == pytest.approx(2.5e-6)
    assert all(lr(s) <= lr(s + 1) for s in range(100)) and all(lr(s) >= lr(s + 1) for s in range(100, 700))


def test_intake_counts_rejections_and_skips_corrupt(tmp_path):
    root = tmp_path / 'eps'
    write_eps(root, ['success', 'success', 'failure', 'abort', 'success'])
    # Overwrite the middle of the last episode's MCAP (footer intact: it is listed, then fails to load).
    bad = sorted(root.iterdir())[-1]
    mcap = next((bad / 'bag').glob('*.mcap'))
    with open(mcap, 'r+b') as f:
        n = mcap.stat().st_size
        f.seek(n // 4)
        f.write(b'\xff' * (n // 2))
    tr = Trainer(cfg(root, tmp_path / 'out'))
    tr.resume_or_init()
    assert tr.ingest() == 5 and tr.ingest() == 0
    r = tr.report()
    assert r['accepted_episodes'] == 2
    assert r['rejected_episodes'] == {'load_error': 1, 'aborted': 1, 'below_threshold': 1}
    # 24 steps, human steps 5..9 dense, autonomous every 4: 0,4 + 5..9 + 10,14,18,22 = 11 / episode
    assert r['accepted_samples'] == 22
    losses = [tr.train_step()['loss'] for _ in range(3)]
    assert all(np.isfinite(losses))


def test_methods_select_data(eps, tmp_path):
    t = Trainer(cfg(eps, tmp_path / 'a', method='hg_dagger'))
    t.resume_or_init()
    t.ingest()
    r = t.report()
    assert r['accepted_episodes'] == 3 and r['accepted_samples'] == 15   # human steps of all labelled
    t = Trainer(cfg(eps, tmp_path / 'h', method='hiors_human_only'))
    t.resume_or_init()
    t.ingest()
    r = t.report()
    assert r['accepted_episodes'] == 2 and r['accepted_samples'] == 10   # human steps of the successes
    t = Trainer(cfg(eps, tmp_path / 'b', thresholds=[0.0, 1.0], threshold_boundaries=[100]))
    t.resume_or_init()
    t.ingest()
    assert t.report()['accepted_episodes'] == 3                           # m1 = 0 accepts the failure
    t = Trainer(cfg(eps, tmp_path / 'c', thresholds=[0.0, 1.0], threshold_boundaries=[3]))
    t.resume_or_init()
    t.ingest()
    assert t.report()['accepted_episodes'] == 2                           # 4 seen >= 3: m2 = 1
    t = Trainer(cfg(eps, tmp_path / 'd', method='bc', demo_dir=str(eps)))
    t.resume_or_init()
    t.ingest()
    r = t.report()
    assert r['episodes_seen'] == 0 and r['demo_samples'] == 22


def test_checkpoint_atomic_signed_and_pruned(eps, tmp_path):
    tr = Trainer(cfg(eps, tmp_path, keep_last=2))
    tr.resume_or_init()
    tr.ingest()
    infos = []
    for _ in range(3):
        tr.train_step()
        infos.append(tr.save_checkpoint())
    names = sorted(os.listdir(tmp_path))
    assert not [n for n in names if n.endswith('.tmp')]
    assert [n for n in names if n.startswith('ckpt_')] == ['ckpt_000002.safetensors', 'ckpt_000003.safetensors']
    last = infos[-1]
    assert sha256_file(last['path']) == last['sha256']
    key = b'test-key'
    m = build_manifest(last['path'], last['version'], key)
    man, data = verify_and_fetch(json.dumps(m), key)
    pol, _, ns, version = load_checkpoint(data)
    from hiors_policy.checkpoint import training_prompt
    from hiors_recorder.dataset import load_episode, list_episodes
    task = load_episode(list_episodes(eps)[0], load_images=False).info.task
    assert task and training_prompt(data) == task, 'the checkpoint says what prompt it was trained on'
    assert version == '000003'
    for k, v in tr.policy.state_dict().items():
        assert torch.equal(v, pol.state_dict()[k])
    with pytest.raises(TransportError):
        verify_and_fetch(json.dumps(m), b'other-key')
    bad = dict(m, sha256='0' * 64)
    with pytest.raises(TransportError):
        verify_and_fetch(json.dumps(bad), key)


def test_resume_after_kill9(eps, tmp_path):
    out = tmp_path / 'out'
    script = textwrap.dedent(f'''
        import torch; torch.set_num_threads(1)
        from hiors_trainer.core import Trainer, TrainerConfig
        t = Trainer(TrainerConfig(episode_dir={str(eps)!r}, out_dir={str(out)!r}, batch_size=2,
                                  replan_stride=4, checkpoint_every_steps=2, intake_interval_s=0.2))
        t.resume_or_init()
        t.run(max_steps=100000)
    ''')
    p = subprocess.Popen([sys.executable, '-c', script], start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            lat = out / 'latest.json'
            if lat.exists() and json.loads(lat.read_text())['version'] >= '000002':
                break
            time.sleep(0.05)
        else:
            pytest.fail('no second checkpoint within 60 s')
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    ptr = json.loads((out / 'latest.json').read_text())
    st = json.loads((out / ptr['state_json']).read_text())
    tr = Trainer(cfg(eps, out))
    assert tr.resume_or_init()
    assert tr.step == st['step'] >= 4
    assert set(tr.ledger) == set(st['ledger']) and len(tr.ledger) == 4
    ref, *_ = load_checkpoint(str(out / ptr['checkpoint']))
    for k, v in ref.state_dict().items():
        assert torch.equal(v, tr.policy.state_dict()[k])
    from safetensors.torch import load_file
    saved = load_file(str(out / ptr['optimizer']))
    assert len(tr.optimizer.state) == len({k.split('.')[0] for k in saved}) > 50
    params = list(tr.policy.parameters())
    sd = tr.optimizer.state_dict()['state']
    assert all(torch.equal(sd[int(k.split('.')[0])][k.split('.', 1)[1]], v) for k, v in saved.items())
    assert params[0] in tr.optimizer.state
    # Nothing lost or double counted: the 4 known episodes come back without recounting.
    assert tr.ingest() == 0
    r = tr.report()
    assert r['episodes_seen'] == 4 and r['accepted_episodes'] == 2 and r['accepted_samples'] == 22
    assert r['rejected_episodes'] == {'aborted': 1, 'below_threshold': 1}
    write_eps(eps, ['success'], start=10)
    assert tr.ingest() == 1 and tr.report()['accepted_episodes'] == 3
    assert np.isfinite(tr.train_step()['loss'])


def test_train_offline_cli(eps, tmp_path):
    from hiors_trainer.train_offline import main
    out = tmp_path / 'base.safetensors'
    assert main(['--episodes', str(eps), '--steps', '3', '--out', str(out), '--batch-size', '2',
                 '--no-progress']) == 0
    pol, c, ns, v = load_checkpoint(str(out))
    assert v == 'offline-000003' and c.name == 'tiny'


def test_ddp_and_fsdp_torchrun_gloo_two_processes(eps, tmp_path):
    """The documented multi-process path (torchrun) on CPU with gloo, 2 processes: DDP and FSDP
    give the same weights (same data, same seeds)."""
    import shutil
    torchrun = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    weights = {}
    for par in ('ddp', 'fsdp'):
        out = tmp_path / f'{par}.safetensors'
        r = subprocess.run([torchrun, '--standalone', '--nproc_per_node=2', '-m', 'hiors_trainer.train_offline',
                            '--episodes', str(eps), '--steps', '2', '--out', str(out), '--batch-size', '2',
                            '--method', 'hiors', '--replan-stride', '4', '--no-progress', '--parallel', par],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        pol, c, ns, v = load_checkpoint(str(out))
        assert v == 'offline-000002'
        weights[par] = pol.state_dict()
    init = Pi0Policy(make_config('tiny')).state_dict()   # differs from both (they trained)
    assert max((weights['ddp'][k] - weights['fsdp'][k]).abs().max().item() for k in init) < 1e-5
    assert max((weights['ddp'][k] - init[k]).abs().max().item() for k in init) > 1e-4


def test_demo_mixing_ratio(eps, tmp_path):
    demos = tmp_path / 'demos'
    write_eps(demos, ['success'], start=20)
    tr = Trainer(cfg(eps, tmp_path / 'out', demo_dir=str(demos), demo_ratio=0.5))
    tr.resume_or_init()
    tr.ingest()
    assert tr.report()['demo_samples'] == 11
    draws = tr._draw(400)
    frac = sum(k.startswith('demo:') for k, _ in draws) / len(draws)
    assert 0.4 < frac < 0.6
    tr0 = Trainer(cfg(eps, tmp_path / 'out0', demo_dir=str(demos), demo_ratio=0.0))
    tr0.resume_or_init()
    tr0.ingest()
    assert not any(k.startswith('demo:') for k, _ in tr0._draw(100))
    # Pooled: the demos' share of a batch is their share of all samples (demo_ratio unused).
    trp = Trainer(cfg(eps, tmp_path / 'outp', demo_dir=str(demos), demo_mix='pooled'))
    trp.resume_or_init()
    trp.ingest()
    rep = trp.report()
    share = rep['demo_samples'] / (rep['demo_samples'] + rep['accepted_samples'])
    assert 0.05 < share < 0.95
    frac = sum(k.startswith('demo:') for k, _ in trp._draw(2000)) / 2000
    assert abs(frac - share) < 0.05


def test_autonomous_weight_thins_the_policys_own_steps(eps, tmp_path):
    """autonomous_weight w: an autonomous sample is drawn w times as often as a human one."""
    shares = {}
    for w in (1.0, 0.25):
        tr = Trainer(cfg(eps, tmp_path / f'w{w}', autonomous_weight=w))
        tr.resume_or_init()
        tr.ingest()
        online, _ = tr.intake.pools()
        n_human = sum(bool(tr.intake.store[key].human[k]) for key, k in online)
        assert 0 < n_human < len(online)           # the synthetic episodes hold both kinds
        draws = tr._draw(4000)
        drawn = sum(bool(tr.intake.store[key].human[k]) for key, k in draws) / len(draws)
        n_auto = len(online) - n_human
        shares[w] = (drawn, n_human / (n_human + w * n_auto))
    for drawn, expected in shares.values():
        assert abs(drawn - expected) < 0.03
    assert shares[0.25][0] > shares[1.0][0] + 0.1
    with pytest.raises(ValueError, match='autonomous_weight'):
        TrainerConfig(autonomous_weight=0.0).validate()


def test_training_reduces_loss_on_accepted_data(eps, tmp_path):
    tr = Trainer(cfg(eps, tmp_path, batch_size=4, lr=3e-3, warmup_steps=5))
    tr.resume_or_init()
    tr.ingest()
    tr.train_step()
    g = torch.Generator().manual_seed(1)
    batch, ind = tr.make_batch(tr._draw(32))
    noise = torch.randn(32, tr.config.chunk_size, tr.config.max_action_dim, generator=g)
    t = torch.rand(32, generator=g) * 0.9 + 0.05

    def held_out():
        with torch.no_grad():
            return hiors_loss(tr.policy, batch, ind, noise=noise, time=t).item()
    before = held_out()
    for _ in range(80):
        tr.train_step()
    after = held_out()
    assert after < 0.85 * before, (before, after)


def test_ema_weights_published_and_resumed(eps, tmp_path):
    """With ema_decay the checkpoint carries the averaged weights, training goes on with the raw
    ones, and a resume restores both exactly."""
    out = tmp_path / 'out'
    tr = Trainer(cfg(eps, out, ema_decay=0.9, lr=1e-2))
    tr.resume_or_init()
    tr.ingest()
    init = {k: v.clone() for k, v in tr.policy.state_dict().items()}
    for _ in range(6):
        tr.train_step()
    raw = {k: v.clone() for k, v in tr.policy.state_dict().items()}
    ema = tr.model_state()
    k = 'action_out_proj.weight'
    # The average lies between init and the raw weights, strictly off both.
    assert not torch.equal(ema[k], raw[k]) and not torch.equal(ema[k], init[k])
    assert (ema[k] - init[k]).norm() < (raw[k] - init[k]).norm()
    info = tr.save_checkpoint()
    published, *_ = load_checkpoint(info['path'])
    assert torch.equal(published.state_dict()[k], ema[k])
    tr2 = Trainer(cfg(eps, out, ema_decay=0.9, lr=1e-2))
    assert tr2.resume_or_init()
    assert all(torch.equal(tr2.policy.state_dict()[n], v) for n, v in raw.items())
    assert all(torch.equal(tr2.model_state()[n], v) for n, v in ema.items())
    with pytest.raises(ValueError, match='ema_decay'):
        TrainerConfig(ema_decay=1.0).validate()


def test_ema_of_a_fine_tune_starts_at_full_decay(eps, tmp_path):
    """From an init_checkpoint the average is already trained weights: one step moves it by
    exactly (1 - decay) of the way to the raw weights (no warm-up handing it the raw ones)."""
    base = Trainer(cfg(eps, tmp_path / 'base'))
    base.resume_or_init()
    base.ingest()
    base.train_step()
    init_path = base.save_checkpoint()['path']
    tr = Trainer(cfg(eps, tmp_path / 'ft', ema_decay=0.9, lr=1e-2, init_checkpoint=init_path))
    tr.resume_or_init()
    tr.ingest()
    init = {k: v.clone() for k, v in tr.policy.state_dict().items()}
    tr.train_step()
    k = 'action_out_proj.weight'
    raw = tr.policy.state_dict()[k]
    assert not torch.equal(raw, init[k])
    assert torch.allclose(tr.model_state()[k], 0.9 * init[k] + 0.1 * raw, atol=1e-6)


def test_label_source_measured_uses_the_next_states(eps, tmp_path):
    """label_source='measured': chunk k holds the states recorded at k+1.. (padded with the last
    one); 'executed' holds the commands; 'measured_arm' mixes the two."""
    tr = Trainer(cfg(eps, tmp_path / 'm', label_source='measured'))
    tr.resume_or_init()
    tr.ingest()
    key = next(k for k, v in tr.store.items() if v.decision.indices.size)
    s = tr.store[key]
    T = len(s.state)
    labels = tr._labels(s)
    assert np.array_equal(labels[:T - 1], s.state[1:]) and np.array_equal(labels[-1], s.state[-1])
    tr.cfg.label_source = 'executed'
    assert np.array_equal(tr._labels(s), s.action)
    # 'measured_arm': the arm joints reached, the gripper as commanded (its squeeze on a held object)
    tr.cfg.label_source = 'measured_arm'
    arm = tr._labels(s)
    assert np.array_equal(arm[:T - 1, :6], s.state[1:, :6]) and np.array_equal(arm[:, 6], s.action[:, 6])
    for source in ('measured', 'measured_arm'):
        tr.cfg.label_source = source
        assert np.isfinite(tr.train_step()['loss'])
    with pytest.raises(ValueError, match='label_source'):
        TrainerConfig(label_source='commands').validate()


def test_image_shift_augments_images_only(eps, tmp_path):
    with pytest.raises(ValueError, match='image_shift_px'):
        TrainerConfig(image_shift_px=-1).validate()

    def textured(info, rate_hz=None):
        # the recorded episodes' frames are flat colours, which a shift leaves unchanged
        ep = load_episode(info, rate_hz=rate_hz)
        rng = np.random.default_rng(0)
        ep.images = {k: rng.integers(0, 256, v.shape, dtype=np.uint8) for k, v in ep.images.items()}
        return ep
    plain = Trainer(cfg(eps, tmp_path / 'plain'), loader=textured)
    shifted = Trainer(cfg(eps, tmp_path / 'shift', image_shift_px=4), loader=textured)
    for tr in (plain, shifted):
        tr.resume_or_init()
        tr.ingest()
        tr.train_step()                                  # norm stats and processor from the data
    draws = plain._draw(8)
    a, _ = plain.make_batch(draws)
    b, _ = shifted.make_batch(draws)
    assert a['images'].shape == b['images'].shape
    assert not torch.equal(a['images'], b['images'])
    for k in a:
        if k != 'images':
            assert torch.equal(a[k], b[k]), k
