"""Fault test: kill -9 each node of the running loop in turn. The supervisor restarts it, no
finished episode is lost, and while the policy or the mux is down the arm holds still."""
import os
import signal
import time

import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from hiors.graph import bringup_graph
from hiors.supervisor import Supervisor
from hiors_common.testing import spin_until
from hiors_common.topics import EPISODE_EVENT, JOINT_STATES, reliable_qos


def test_kill9_each_node_in_turn(tmp_path, test_node):
    key = tmp_path / 'key'
    key.write_text('fault-test-key')
    env = dict(os.environ, HIORS_CHECKPOINT_KEY_FILE=str(key))
    episodes = tmp_path / 'episodes'
    specs = bringup_graph({'teleop': 'sim_human', 'sim_human_mode': 'demo', 'num_episodes': '0',
                           'trainer': 'false', 'dashboard': 'false', 'episode_dir': str(episodes),
                           'episode_timeout_s': '20.0',
                           'sim.camera_width': '64', 'sim.camera_height': '64'})
    joints, events = [], []
    test_node.create_subscription(JointState, JOINT_STATES, lambda m: joints.append(
        (time.monotonic(), np.array(m.position))), reliable_qos(50))
    test_node.create_subscription(String, EPISODE_EVENT, lambda m: events.append(m.data), 10)
    sup = Supervisor(specs, str(tmp_path / 'logs'), env=env, echo=lambda m: None).start()

    def logs():
        return '\n'.join(f'--- {p.name}\n' + p.read_text()[-2500:] for p in (tmp_path / 'logs').glob('*.log'))

    def finished():
        from hiors_recorder.dataset import list_episodes
        return {e.episode_id: e.outcome for e in list_episodes(str(episodes))}

    def spin(pred, timeout):
        return spin_until(test_node, lambda: sup.poll() and pred(), timeout)

    try:
        assert spin(lambda: len(finished()) >= 1, 90), logs()
        for name in ['policy', 'command_mux', 'recorder', 'sim', 'sim_human']:
            before = finished()
            restarts = sup.restart_counts.get(name, 0)
            os.killpg(sup.pid(name), signal.SIGKILL)
            t_kill = time.monotonic()
            assert spin(lambda: sup.restart_counts.get(name, 0) == restarts + 1, 20), f'{name} not restarted'
            if name in ('command_mux',):
                # No mux: no command reaches the arm; the sim keeps its last target, so it holds.
                window = [q for t, q in joints if t_kill + 0.3 < t < t_kill + 1.5]
                if len(window) > 2:
                    assert np.max(np.ptp(np.array(window)[:, :6], axis=0)) < 0.05, f'arm moved while {name} was down'
            # Every episode finished before the kill is still there with the same label.
            assert spin(lambda: len(finished()) >= len(before), 10)
            after = finished()
            assert all(after.get(k) == v for k, v in before.items()), f'lost an episode killing {name}'
            # The loop carries on: another episode finishes after the restart.
            n = len(after)
            assert spin(lambda: len(finished()) > n, 90), f'no episode after restarting {name}\n{logs()}'
    finally:
        sup.shutdown()
