"""The recorder node as a real process, fed by real publishers over DDS (loopback only)."""
import os
import subprocess
import time
from collections import Counter

import numpy as np
import pytest

from hiors_common.testing import NodeProcess, spin_until
from hiors_common.topics import (ACTION_CHUNK_RAW, DIAGNOSTICS, EPISODE_EVENT, EXECUTED_ACTION, INTERVENTION,
                                 JOINT_STATES, POLICY_VERSION, camera_topic, event_qos, latched_qos, reliable_qos)
from hiors_recorder.dataset import list_episodes, load_episode
from hiors_recorder.episode import EPISODE_FILE, MARKER_FILE

JOINTS = ['joint1', 'joint2', 'joint3', 'joint4', 'joint5', 'joint6', 'gripper']


class Feeder:
    """Publishes what the robot, the mux, the teleop and the policy publish, and counts it."""

    def __init__(self, node, cameras=('front', 'wrist'), size=32):
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool, Float64MultiArray, String
        self.node, self.size, self.cameras = node, size, cameras
        rel, latched = reliable_qos(100), latched_qos()
        self.pubs = {
            JOINT_STATES: node.create_publisher(JointState, JOINT_STATES, rel),
            EXECUTED_ACTION: node.create_publisher(JointState, EXECUTED_ACTION, rel),
            INTERVENTION: node.create_publisher(Bool, INTERVENTION, rel),
            ACTION_CHUNK_RAW: node.create_publisher(Float64MultiArray, ACTION_CHUNK_RAW, rel),
            POLICY_VERSION: node.create_publisher(String, POLICY_VERSION, latched),
            EPISODE_EVENT: node.create_publisher(String, EPISODE_EVENT, rel),
        }
        for cam in cameras:
            self.pubs[camera_topic(cam)] = node.create_publisher(Image, camera_topic(cam), rel)
        self.types = {'JointState': JointState, 'Image': Image, 'Bool': Bool, 'String': String,
                      'Float64MultiArray': Float64MultiArray}
        self.counts = Counter()

    def wait_matched(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.pubs.values()):
                return True
            time.sleep(0.1)
        return False

    def _pub(self, topic, msg):
        self.pubs[topic].publish(msg)
        self.counts[topic] += 1

    def event(self, text):
        self._pub(EPISODE_EVENT, self.types['String'](data=text))

    def version(self, text):
        self._pub(POLICY_VERSION, self.types['String'](data=text))

    def run(self, seconds, state_hz=50.0, cam_hz=10.0, act_hz=10.0, human=(0.4, 0.8), stop=None):
        T = self.types
        t0 = time.monotonic()
        next_t = {'s': t0, 'c': t0, 'a': t0}
        img = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        human_on = False
        k = 0
        while time.monotonic() - t0 < seconds and not (stop and stop()):
            now = time.monotonic()
            el = now - t0
            if now >= next_t['s']:
                js = T['JointState'](name=JOINTS, position=[0.01 * k] * 7)
                js.header.stamp = self.node.get_clock().now().to_msg()
                self._pub(JOINT_STATES, js)
                next_t['s'] += 1.0 / state_hz
                k += 1
            if now >= next_t['c']:
                img[:] = k % 256
                for cam in self.cameras:
                    m = T['Image'](height=self.size, width=self.size, encoding='rgb8', step=self.size * 3,
                                   data=img.tobytes())
                    m.header.frame_id = cam
                    self._pub(camera_topic(cam), m)
                next_t['c'] += 1.0 / cam_hz
            if now >= next_t['a']:
                want = human is not None and human[0] <= el < human[1]
                if want != human_on:
                    self._pub(INTERVENTION, T['Bool'](data=want))
                    human_on = want
                if not want:
                    self._pub(ACTION_CHUNK_RAW,
                              T['Float64MultiArray'](data=[0.1] * 14))
                act = T['JointState'](name=JOINTS, position=[0.02 * k] * 7)
                act.header.frame_id = 'human' if want else 'policy'
                self._pub(EXECUTED_ACTION, act)
                next_t['a'] += 1.0 / act_hz
            time.sleep(0.002)
        if human_on:
            self._pub(INTERVENTION, T['Bool'](data=False))


def _wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _recorder(tmp_path, episode_dir, name='recorder', extra=()):
    return NodeProcess('hiors_recorder.recorder_node',
                       ros_args=['-r', f'__node:={name}', '-p', f'episode_dir:={episode_dir}',
                                 '-p', 'cameras:=[front, wrist]', '-p', 'flush_interval_s:=0.2',
                                 '-p', 'diagnostics_period_s:=0.5', *extra],
                       log_path=str(tmp_path / f'{name}.log'))


def _episode(feeder, seconds, outcome, settle=0.4, **kw):
    feeder.event('start')
    time.sleep(settle)            # the start event is handled before the data
    before = Counter(feeder.counts)
    feeder.run(seconds, **kw)
    time.sleep(settle)            # the data is handled before the end event
    published = feeder.counts - before
    feeder.event(outcome)
    return published


def test_records_episodes_from_real_publishers(test_node, tmp_path):
    root = tmp_path / 'episodes'
    feeder = Feeder(test_node)
    with _recorder(tmp_path, root) as rec:
        assert feeder.wait_matched(), rec.log()
        feeder.version('v000007')
        published = _episode(feeder, 1.5, 'success')
        assert _wait(lambda: len(list_episodes(str(root))) == 1, 20), rec.log()
        info = list_episodes(str(root))[0]
        # every message published inside the episode is in the bag
        for topic, n in published.items():
            assert info.topic_counts.get(topic, 0) == n, (topic, info.topic_counts, dict(published))
        assert info.outcome == 'success' and info.reward == 1.0
        assert info.steps == published[EXECUTED_ACTION]
        assert info.num_interventions == 1 and 0.2 < info.intervention_time_s < 0.6
        assert info.policy_version == 'v000007'
        assert info.topic_counts[POLICY_VERSION] == 1      # latched version at the start
        assert info.topic_counts[EPISODE_EVENT] == 2
        ep = load_episode(info, rate_hz=10.0)
        assert ep.images['front'].shape[1:] == (32, 32, 3) and len(ep) >= 10
        assert ep.intervention.any() and not ep.intervention.all()
        assert not os.path.exists(os.path.join(info.path, MARKER_FILE))
        # the bag holds the publishers' CDR bytes unchanged: rclpy deserialises them
        from rclpy.serialization import deserialize_message
        from rosbags.rosbag2 import Reader
        from sensor_msgs.msg import Image, JointState
        with Reader(info.bag_path) as reader:
            conns = {c.topic: c for c in reader.connections}
            for conn, _t, raw in reader.messages([conns[EXECUTED_ACTION], conns[camera_topic('front')]]):
                msg = deserialize_message(raw, JointState if conn.msgtype.endswith('JointState') else Image)
                if isinstance(msg, JointState):
                    assert list(msg.name) == JOINTS and msg.header.frame_id in ('policy', 'human')
                else:
                    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (32, 32, 'rgb8', 'front')

        _episode(feeder, 0.5, 'failure', human=None)
        assert _wait(lambda: len(list_episodes(str(root))) == 2, 20), rec.log()
        second = list_episodes(str(root))[1]
        assert second.outcome == 'failure' and second.reward == 0.0 and second.num_interventions == 0
    assert rec.proc.returncode == 0, rec.log()


def test_kill9_mid_episode_then_recover(test_node, tmp_path):
    root = tmp_path / 'episodes'
    feeder = Feeder(test_node)
    rec = _recorder(tmp_path, root).start()
    try:
        assert feeder.wait_matched(), rec.log()
        _episode(feeder, 0.6, 'success')
        assert _wait(lambda: len(list_episodes(str(root))) == 1, 20), rec.log()
        first = list_episodes(str(root))[0]
        first_json = open(os.path.join(first.path, EPISODE_FILE)).read()
        feeder.event('start')
        time.sleep(0.4)
        before = Counter(feeder.counts)
        feeder.run(1.5, human=None)
        rec.kill9()               # mid-episode, no end event
        published = feeder.counts - before
    finally:
        rec.stop()
    unfinished = [d for d in os.listdir(root) if d != first.episode_id]
    assert len(unfinished) == 1
    udir = root / unfinished[0]
    assert (udir / MARKER_FILE).exists() and not (udir / EPISODE_FILE).exists()
    assert [i.episode_id for i in list_episodes(str(root))] == [first.episode_id]   # never listed

    with _recorder(tmp_path, root, name='recorder2') as rec2:
        assert _wait(lambda: len(list_episodes(str(root))) == 2, 20), rec2.log()
        assert _wait(lambda: 'recovered unfinished episode' in rec2.log(), 5), rec2.log()
    eps = {i.episode_id: i for i in list_episodes(str(root))}
    rec_info = eps[unfinished[0]]
    assert rec_info.recovered and rec_info.outcome == 'abort' and rec_info.reward == 0.0
    n = rec_info.topic_counts.get(JOINT_STATES, 0)
    # flushed every 0.2 s: almost all of the 1.5 s is there, nothing invented
    assert 0.5 * published[JOINT_STATES] <= n <= published[JOINT_STATES]
    assert len(load_episode(rec_info)) > 0
    assert open(os.path.join(first.path, EPISODE_FILE)).read() == first_json   # earlier episode intact


def _diag_listener(node):
    from diagnostic_msgs.msg import DiagnosticArray
    seen = []
    node.create_subscription(DiagnosticArray, DIAGNOSTICS,
                             lambda m: seen.extend((s.name, s.level[0] if isinstance(s.level, bytes) else s.level,
                                                    s.message) for s in m.status), 10)
    return seen


def _has(seen, name, words):
    return any(n == name and lvl == 2 and all(w in msg for w in words) for n, lvl, msg in seen)


def test_unwritable_directory_is_reported(test_node, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    seen = _diag_listener(test_node)
    with _recorder(tmp_path, blocker / 'episodes', name='rec_unwritable') as rec:
        assert spin_until(test_node, lambda: _has(seen, '/rec_unwritable', ['not writable']), 30), (seen, rec.log())
        assert 'not writable' in rec.log()


def test_disk_full_is_reported(test_node, tmp_path):
    mnt = tmp_path / 'small_disk'
    mnt.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip('cannot mount a small tmpfs here (needs root) to fill a disk')
    try:
        seen = _diag_listener(test_node)
        feeder = Feeder(test_node, size=224)
        with _recorder(tmp_path, mnt / 'episodes', name='rec_full', extra=['-p', 'min_free_mb:=0.5']) as rec:
            assert feeder.wait_matched(), rec.log()
            feeder.event('start')
            time.sleep(0.3)
            feeder.run(1.5, cam_hz=30.0)       # 2 x 150 kB x 30 Hz: fills 3 MB in well under a second
            feeder.event('success')
            assert spin_until(test_node, lambda: _has(seen, '/rec_full', ['disk full']), 20), (seen, rec.log())
            assert 'disk full' in rec.log()
            # the next episode is refused up front
            feeder.event('start')
            assert _wait(lambda: 'not recording: disk full' in rec.log(), 10), rec.log()
            assert rec.alive()
        assert list_episodes(str(mnt / 'episodes')) == []    # nothing half-written is ever listed
    finally:
        subprocess.run(['umount', '-l', str(mnt)], capture_output=True)


def test_adapts_to_best_effort_and_volatile_publishers(test_node, tmp_path):
    """A sensor published best effort and a version published volatile are still recorded."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    root = tmp_path / 'episodes'
    js = test_node.create_publisher(JointState, JOINT_STATES, qos_profile_sensor_data)
    ver = test_node.create_publisher(String, POLICY_VERSION, 10)
    ev = test_node.create_publisher(String, EPISODE_EVENT, event_qos())
    with _recorder(tmp_path, root, extra=['-p', 'cameras:=[]']) as rec:
        assert _wait(lambda: js.get_subscription_count() > 0 and ver.get_subscription_count() > 0
                     and ev.get_subscription_count() > 0, 30), rec.log()
        assert 'resubscribing' in rec.log()
        ev.publish(String(data='start'))
        time.sleep(0.4)
        ver.publish(String(data='v42'))
        for k in range(20):
            js.publish(JointState(name=JOINTS, position=[0.1 * k] * 7))
            time.sleep(0.01)
        time.sleep(0.4)
        ev.publish(String(data='failure'))
        assert _wait(lambda: len(list_episodes(str(root))) == 1, 20), rec.log()
    info = list_episodes(str(root))[0]
    assert info.topic_counts[JOINT_STATES] >= 18 and info.policy_version == 'v42'
