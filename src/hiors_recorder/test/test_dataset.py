"""Recorder core, dataset library, recovery, relabelling and export, without DDS."""
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hiors_common.topics import ACTION_CHUNK_RAW, EPISODE_EVENT, EXECUTED_ACTION, JOINT_STATES, camera_topic
from hiors_recorder import bagio
from hiors_recorder.dataset import list_episodes, load_episode, read_topic, topic_stats
from hiors_recorder.episode import EPISODE_FILE, MARKER_FILE, EpisodeError, relabel_episode
from hiors_recorder.recorder import recover_unfinished
from hiors_recorder.synthetic import write_synthetic_episode


def test_round_trip_and_alignment(tmp_path):
    info = write_synthetic_episode(str(tmp_path), steps=30, rate_hz=10.0, intervene=(5, 10))
    assert info.outcome == 'success' and info.reward == 1.0
    assert info.steps == 30 and info.num_interventions == 1
    assert info.intervention_spans == [[pytest.approx(0.6, abs=1e-3), pytest.approx(1.1, abs=1e-3)]]
    assert info.policy_version == 'v000001'
    assert info.topic_counts[JOINT_STATES] == 60 and info.topic_counts[camera_topic('front')] == 30

    # bag is a real rosbag2: rosbags reads metadata.yaml and the MCAP
    from rosbags.rosbag2 import Reader
    with Reader(info.bag_path) as reader:
        assert reader.message_count == sum(info.topic_counts.values())
        assert {c.topic: c.msgtype for c in reader.connections}[EXECUTED_ACTION] == bagio.JOINT_STATE

    ep = load_episode(info)                       # native timeline = executed actions
    assert len(ep) == 30 and ep.state.shape == (30, 7) and ep.state.dtype == np.float32
    assert ep.action.shape == (30, 7) and ep.images['front'].shape == (30, 32, 32, 3)
    np.testing.assert_allclose(ep.t, 0.1 * np.arange(1, 31), atol=1e-6)
    # step k: image k (published just before action k), action = waypoint k+1 = state at end of step
    assert (ep.images['front'][:, 0, 0, 0] == 8 * np.arange(30) % 256).all()
    assert (ep.images['wrist'][:, 0, 0, 1] == 40).all()
    np.testing.assert_allclose(ep.state[1:], ep.action[:-1], atol=1e-6)
    assert ep.intervention.tolist() == [5 <= k < 10 for k in range(30)]
    assert (ep.action_source[ep.intervention] == 'human').all()
    assert ep.intervention_flag[5] and not ep.intervention_flag[12]

    ep5 = load_episode(info, rate_hz=5.0)         # resampled: every other step
    assert len(ep5) == 15
    assert (ep5.images['front'][:, 0, 0, 0] == 8 * np.arange(0, 30, 2)).all()
    # A robot clock a little off the nominal rate: the steps stay the recorded ones, each state
    # with its own step's action and image (a fixed 10 Hz grid paired ~half of them a step off).
    for robot_hz in (10.3, 9.7):
        drift = write_synthetic_episode(str(tmp_path / f'drift{robot_hz}'), steps=30, rate_hz=robot_hz)
        native, at10 = load_episode(drift), load_episode(drift, rate_hz=10.0)
        assert len(at10) == len(native) == 30, robot_hz
        np.testing.assert_array_equal(at10.state, native.state)
        np.testing.assert_array_equal(at10.action, native.action)
        np.testing.assert_array_equal(at10.images['front'], native.images['front'])
    noimg = load_episode(info, load_images=False)
    assert noimg.images == {} and len(noimg) == 30

    chunks = read_topic(info, ACTION_CHUNK_RAW)
    assert len(chunks) == 25 and chunks[0][0] == pytest.approx(0.1, abs=1e-3)
    msg = chunks[0][1]
    assert np.asarray(msg.data).reshape([d.size for d in msg.layout.dim]).shape == (4, 7)

    stats = topic_stats(info)
    assert stats[JOINT_STATES]['count'] == 60
    assert stats[JOINT_STATES]['rate_hz'] == pytest.approx(20.0, rel=1e-3)
    assert stats[JOINT_STATES]['gaps'] == 0
    assert stats[ACTION_CHUNK_RAW]['gaps'] == 1   # no chunks while the human drove
    with pytest.raises(ValueError):
        load_episode(info, rate_hz=float('nan'))


def test_listing_order_and_filters(tmp_path):
    a = write_synthetic_episode(str(tmp_path), steps=5, outcome='success', start_ns=2_000_000_000_000_000_000)
    b = write_synthetic_episode(str(tmp_path), steps=5, outcome='failure', start_ns=1_000_000_000_000_000_000)
    assert [i.episode_id for i in list_episodes(str(tmp_path))] == [b.episode_id, a.episode_id]
    assert [i.episode_id for i in list_episodes(str(tmp_path), outcome='success')] == [a.episode_id]
    assert list_episodes(str(tmp_path / 'nothing')) == []
    d = a.to_dict()
    assert d['episode_id'] == a.episode_id and d['steps'] == 5 and 'num_interventions' in d


def _truncate(path, fraction):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * fraction))


def test_corrupt_bags_are_named_and_skipped(tmp_path, caplog):
    good = write_synthetic_episode(str(tmp_path), steps=5, seed=1)
    trunc = write_synthetic_episode(str(tmp_path), steps=5, seed=2)
    garbage = write_synthetic_episode(str(tmp_path), steps=5, seed=3)
    badjson = write_synthetic_episode(str(tmp_path), steps=5, seed=4)
    mcap_trunc = os.path.join(trunc.bag_path, 'bag.mcap')
    _truncate(mcap_trunc, 0.5)
    mcap_garbage = os.path.join(garbage.bag_path, 'bag.mcap')
    data = bytearray(open(mcap_garbage, 'rb').read())
    data[200:4000] = os.urandom(3800)       # corrupt the middle, keep both magics
    open(mcap_garbage, 'wb').write(bytes(data))
    with open(os.path.join(badjson.path, EPISODE_FILE), 'w') as f:
        f.write('{"episode_id": ')
    with caplog.at_level(logging.WARNING, logger='hiors_recorder'):
        infos = list_episodes(str(tmp_path))
    ids = [i.episode_id for i in infos]
    assert good.episode_id in ids and trunc.episode_id not in ids and badjson.episode_id not in ids
    assert mcap_trunc in caplog.text and 'truncated' in caplog.text
    assert os.path.join(badjson.path, EPISODE_FILE) in caplog.text
    with pytest.raises(EpisodeError, match='bag.mcap'):
        load_episode(trunc)
    with pytest.raises(EpisodeError, match=garbage.episode_id):
        load_episode(garbage)
    with pytest.raises(EpisodeError, match='episode.json'):
        load_episode(badjson.path)
    assert len(load_episode(good)) == 5


def test_recover_truncated_and_quarantine_garbage(tmp_path, caplog):
    # An episode cut off by a crash: bag without metadata.yaml/footer, marker still present.
    info = write_synthetic_episode(str(tmp_path), steps=40, image_size=(64, 64), seed=5, flush_interval_s=0.0)
    total = sum(info.topic_counts.values())
    os.unlink(os.path.join(info.path, EPISODE_FILE))
    os.unlink(os.path.join(info.bag_path, 'metadata.yaml'))
    with open(os.path.join(info.path, MARKER_FILE), 'w') as f:
        json.dump({'episode_id': info.episode_id, 'start_time': info.start_time, 'pid': 999999999,
                   'topics': info.topics, 'robot': 'r', 'task': 't'}, f)
    # the recorder flushes chunks as it goes; force several chunks, then cut inside the last one
    _truncate(os.path.join(info.bag_path, 'bag.mcap'), 0.8)
    # and a directory with nothing usable
    junk = tmp_path / 'ep_junk'
    (junk / 'bag').mkdir(parents=True)
    (junk / 'bag' / 'bag.mcap').write_bytes(b'not an mcap file at all')
    assert list_episodes(str(tmp_path)) == []       # unfinished: never listed
    with caplog.at_level(logging.WARNING, logger='hiors_recorder'):
        results = dict((n, w) for n, w, _ in recover_unfinished(str(tmp_path)))
    assert results == {info.episode_id: 'recovered', 'ep_junk': 'quarantined'}
    assert 'recovered unfinished episode' in caplog.text and 'quarantined' in caplog.text
    assert (tmp_path / '_quarantine' / 'ep_junk' / 'QUARANTINED.txt').exists()
    infos = list_episodes(str(tmp_path))
    assert [i.episode_id for i in infos] == [info.episode_id]
    rec = infos[0]
    assert rec.recovered and rec.outcome == 'abort' and rec.reward == 0.0
    assert 0 < sum(rec.topic_counts.values()) < total
    assert not os.path.exists(os.path.join(rec.path, MARKER_FILE))
    ep = load_episode(rec)
    assert 0 < len(ep) < 40
    # second run: nothing left to do
    assert recover_unfinished(str(tmp_path)) == []


def test_relabel_cli(tmp_path):
    info = write_synthetic_episode(str(tmp_path), steps=5, outcome='failure')
    cli = [sys.executable, '-m', 'hiors_recorder.cli', '--root', str(tmp_path)]
    out = subprocess.run(cli + ['relabel', info.episode_id, 'success', '--note', 'label slip'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    new = list_episodes(str(tmp_path))[0]
    assert new.outcome == 'success' and new.reward == 1.0
    assert new.label_history[-1]['from'] == 'failure' and new.label_history[-1]['note'] == 'label slip'
    out = subprocess.run(cli + ['list'], capture_output=True, text=True, timeout=60)
    assert info.episode_id in out.stdout and 'relabelled from failure' in out.stdout
    out = subprocess.run(cli + ['show', info.episode_id, '--gaps'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f'"{JOINT_STATES}"' in out.stdout and '"max_gap_s"' in out.stdout
    out = subprocess.run(cli + ['relabel', 'ep_does_not_exist', 'success'], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and 'ep_does_not_exist' in out.stderr
    with pytest.raises(ValueError):
        relabel_episode(str(tmp_path), info.episode_id, 'great')


def test_lerobot_export_round_trip(tmp_path):
    pytest.importorskip('av', reason='PyAV (requirements: av==18.1.0) writes the MP4 videos')
    root = tmp_path / 'eps'
    a = write_synthetic_episode(str(root), steps=20, image_size=(64, 64), seed=1, start_ns=10**18)
    b = write_synthetic_episode(str(root), steps=12, image_size=(64, 64), seed=2, outcome='failure',
                                intervene=None, start_ns=2 * 10**18)
    out = tmp_path / 'lerobot'
    cli = [sys.executable, '-m', 'hiors_recorder.cli', '--root', str(root)]
    res = subprocess.run(cli + ['export', str(out), '--fps', '10'], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    from hiors_recorder.lerobot_export import read_lerobot
    ds = read_lerobot(str(out))
    info = ds['info']
    assert info['codebase_version'] == 'v3.0' and info['total_episodes'] == 2 and info['total_frames'] == 32
    assert info['features']['observation.images.front']['info']['video.codec'] in ('av1', 'h264')
    eps = ds['episodes']
    assert [e['length'] for e in eps] == [20, 12] and eps[1]['dataset_from_index'] == 20
    assert eps[1]['videos/observation.images.front/from_timestamp'] == pytest.approx(2.0)
    fr = ds['frames']
    for e, src in zip(eps, (a, b)):
        ep = load_episode(src, rate_hz=10.0)
        sl = slice(e['dataset_from_index'], e['dataset_to_index'])
        np.testing.assert_array_equal(fr['observation.state'][sl], ep.state)
        np.testing.assert_array_equal(fr['action'][sl], ep.action)
        assert fr['is_intervention'][sl].tolist() == ep.intervention.tolist()
        assert fr['next.reward'][sl][-1] == src.reward and fr['next.done'][sl][-1]
        np.testing.assert_allclose(fr['timestamp'][sl], np.arange(len(ep)) / 10.0, atol=1e-6)
        video = ds['videos']['observation.images.front'][sl].astype(float)
        # lossy video: compare each frame's mean red level (the step code) with the source
        np.testing.assert_allclose(video[..., 0].mean(axis=(1, 2)),
                                   ep.images['front'][..., 0].mean(axis=(1, 2)), atol=3.0)
    assert ds['tasks'][0]['task'] == a.task
    # exporting into a non-empty directory is refused
    res = subprocess.run(cli + ['export', str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and 'not empty' in res.stderr
    shutil.rmtree(out)


def test_out_of_order_messages_around_events(tmp_path):
    """Messages sent after the start / before the end event but handled out of order (another
    topic's callback ran first) belong to the episode; later ones do not."""
    from hiors_recorder import synthetic as syn
    from hiors_recorder.recorder import EpisodeRecorder, RecorderConfig
    cfg = RecorderConfig(episode_dir=str(tmp_path), cameras=[], min_free_mb=0.0, event_grace_s=0.5)
    rec = EpisodeRecorder(cfg)
    ms = 1_000_000
    T = 10**18
    js = lambda k: syn.joint_state([0.01 * k] * 7)  # noqa: E731
    rec.on_message(JOINT_STATES, js(0), T + 1 * ms, src_ns=T - 5 * ms)     # before start: out
    rec.on_message(JOINT_STATES, js(1), T + 2 * ms, src_ns=T + 1 * ms)     # sent after start: in
    rec.on_message(EPISODE_EVENT, syn.string('start'), T + 3 * ms, src_ns=T)
    for k in range(2, 12):
        rec.on_message(JOINT_STATES, js(k), T + (10 + k) * ms, src_ns=T + (9 + k) * ms)
    rec.on_message(EPISODE_EVENT, syn.string('success'), T + 30 * ms, src_ns=T + 25 * ms)
    rec.on_message(JOINT_STATES, js(12), T + 31 * ms, src_ns=T + 24 * ms)  # sent before end: in
    rec.on_message(JOINT_STATES, js(13), T + 32 * ms, src_ns=T + 26 * ms)  # sent after end: out
    assert rec.recording
    rec.tick(T + 600 * ms)                                                  # grace over: finish
    assert not rec.recording
    rec.close()
    info = list_episodes(str(tmp_path))[0]
    assert info.topic_counts[JOINT_STATES] == 12 and info.outcome == 'success'


def test_flag_raised_just_before_the_end_event_is_no_takeover(tmp_path):
    """The simulated human labels an episode and takes the arm home: its intervention flag can
    reach the recorder a little before the end event (another topic). Such a flag, after the last
    executed action, is not a takeover; one raised while actions still follow is."""
    from hiors_common.topics import INTERVENTION
    from hiors_recorder import synthetic as syn
    from hiors_recorder.recorder import EpisodeRecorder, RecorderConfig
    cfg = RecorderConfig(episode_dir=str(tmp_path), cameras=[], min_free_mb=0.0, event_grace_s=0.0)
    rec = EpisodeRecorder(cfg)
    ms, T = 1_000_000, 10**18
    for ep, flag_at in enumerate((9, 5)):          # flag after the last action / in the middle
        t0 = T + ep * 1000 * ms
        rec.on_message(INTERVENTION, syn.boolean(False), t0 - ms, src_ns=t0 - ms)    # released before start
        rec.on_message(EPISODE_EVENT, syn.string('start'), t0, src_ns=t0)
        for k in range(8):
            t = t0 + (10 + 10 * k) * ms
            if k == flag_at:
                rec.on_message(INTERVENTION, syn.boolean(True), t - ms, src_ns=t - ms)
            rec.on_message(JOINT_STATES, syn.joint_state([0.01 * k] * 7), t, src_ns=t)
            src = 'human' if k >= flag_at else 'policy'
            rec.on_message(EXECUTED_ACTION, syn.joint_state([0.01 * k] * 7, frame_id=src), t + ms, src_ns=t + ms)
        if flag_at >= 8:
            rec.on_message(INTERVENTION, syn.boolean(True), t0 + 95 * ms, src_ns=t0 + 95 * ms)
        rec.on_message(EPISODE_EVENT, syn.string('success'), t0 + 96 * ms, src_ns=t0 + 96 * ms)
        rec.tick(t0 + 500 * ms)
    rec.close()
    late, middle = list_episodes(str(tmp_path))
    assert late.num_interventions == 0 and late.intervention_spans == []
    assert middle.num_interventions == 1
    assert middle.intervention_spans[0][0] == pytest.approx(0.059, abs=1e-3)
