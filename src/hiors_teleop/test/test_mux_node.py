"""The mux node as its own process over real DDS: priority, limits, NaN drop, watchdog hold (not
policy) on a frozen device, recovery, e-stop topic + service, episode services."""
import json
import math
import os
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from hiors_common.testing import NodeProcess, spin_until
from hiors_common.topics import (DIAGNOSTICS, EPISODE_EVENT, ESTOP, EXECUTED_ACTION, INTERVENTION, JOINT_STATES,
                                 MUX_STATUS, POLICY_COMMAND, RESUME_SERVICE, ROBOT_COMMAND, SET_ESTOP_SERVICE,
                                 TELEOP_COMMAND, episode_service, event_qos)
from hiors_teleop.mux import JOINT_NAMES, REARM_WAIT

HOME = [0.0, 0.3, -0.3, 0.0, 0.5, 0.0, 0.02]


class Harness:
    def __init__(self, node):
        self.node = node
        self.q = list(HOME)
        self.policy = None           # what the fake policy keeps publishing (None = silent)
        self.teleop = None
        self.cmds, self.execs, self.events, self.status = [], [], [], []
        self.js_pub = node.create_publisher(JointState, JOINT_STATES, 10)
        self.pol_pub = node.create_publisher(Float64MultiArray, POLICY_COMMAND, 10)
        self.tel_pub = node.create_publisher(Float64MultiArray, TELEOP_COMMAND, 10)
        self.int_pub = node.create_publisher(Bool, INTERVENTION, event_qos())
        self.estop_pub = node.create_publisher(Bool, ESTOP, 10)
        node.create_subscription(Float64MultiArray, ROBOT_COMMAND,
                                 lambda m: self.cmds.append((time.monotonic(), list(m.data))), 10)
        node.create_subscription(JointState, EXECUTED_ACTION,
                                 lambda m: self.execs.append((time.monotonic(), m.header.frame_id,
                                                              list(m.position))), event_qos())
        node.create_subscription(String, EPISODE_EVENT, lambda m: self.events.append(m.data),
                                 event_qos())
        node.create_subscription(String, MUX_STATUS, lambda m: self.status.append(json.loads(m.data)),
                                 10)
        self.diag = []
        node.create_subscription(DiagnosticArray, DIAGNOSTICS, lambda m: self.diag.extend(m.status), 10)
        node.create_timer(0.02, self._tick)

    def _tick(self):
        js = JointState(name=list(JOINT_NAMES), position=[float(x) for x in self.q])
        js.header.stamp = self.node.get_clock().now().to_msg()
        self.js_pub.publish(js)
        if self.policy is not None:
            self.pol_pub.publish(Float64MultiArray(data=[float(x) for x in self.policy]))
        if self.teleop is not None:
            self.tel_pub.publish(Float64MultiArray(data=[float(x) for x in self.teleop]))

    def sources_since(self, t0):
        return [src for t, src, _ in self.execs if t >= t0]

    def last_exec(self):
        return self.execs[-1] if self.execs else (0, None, None)

    def wait_source(self, src, timeout=5.0, settle_to=None):
        def ok():
            _, s, pos = self.last_exec()
            if s != src:
                return False
            return settle_to is None or np.allclose(pos, settle_to, atol=1e-6)
        return spin_until(self.node, ok, timeout)


MUX_YAML = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config', 'command_mux.yaml')


@pytest.fixture
def mux_proc():
    # The shipped params file (as the bringup passes it), with test overrides on top.
    proc = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-r', '__node:=command_mux', '--params-file', MUX_YAML,
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.2', '-p', 'rate_hz:=20.0',
        '-p', 'reset_service:=/test_mux/reset']).start()
    yield proc
    rc = proc.stop()
    assert rc == 0, proc.log()


def test_mux_over_dds(test_node, mux_proc):
    h = Harness(test_node)
    log = mux_proc.log
    # 1. policy drives the robot
    pol = list(HOME)
    pol[0] = 0.05
    h.policy = pol
    assert h.wait_source('policy', timeout=20, settle_to=pol), log()
    # 2. takeover: human wins while the policy keeps publishing
    hum = list(HOME)
    hum[0] = -0.05
    h.teleop = hum
    t_take = time.monotonic()
    h.int_pub.publish(Bool(data=True))
    assert h.wait_source('human', settle_to=hum), log()
    seq = [p[0] for t, s, p in h.execs if t >= t_take]
    assert max(abs(b - a) for a, b in zip(seq, seq[1:])) <= 1.5 * 0.05 + 1e-6, 'takeover jumped'
    # 3. frozen device mid-takeover -> hold at the measured position, never the policy
    h.q = list(hum)
    h.teleop = None
    t_freeze = time.monotonic()
    assert h.wait_source('hold'), log()
    spin_until(test_node, lambda: False, 0.5)
    assert 'policy' not in h.sources_since(t_freeze)
    assert np.allclose(h.last_exec()[2], hum)
    assert any('NOT returning to the policy' in (s.get('reason') or '') for s in h.status), h.status[-3:]
    # 4. replug: the device's commands come back -> human again
    h.teleop = hum
    assert h.wait_source('human'), log()
    # 5. hand back to the policy
    h.teleop = None
    h.int_pub.publish(Bool(data=False))
    assert h.wait_source('policy', settle_to=pol), log()
    # 6. NaN and out-of-range commands are dropped and reported; the robot keeps the last good one
    t_bad = time.monotonic()
    h.policy = [math.nan] * 7
    spin_until(test_node, lambda: False, 0.15)
    h.policy = None
    h.pol_pub.publish(Float64MultiArray(data=[9.0] + HOME[1:]))
    assert spin_until(test_node, lambda: h.status and 'policy:NaN/inf' in h.status[-1]['dropped']
                      and 'policy:out of range' in h.status[-1]['dropped'], 3.0), h.status[-1:]
    assert all(np.all(np.isfinite(p)) and abs(p[0]) < 3.1 for t, _, p in h.execs if t >= t_bad)
    # 7. limits: within tolerance -> clipped to the limit (gripper upper 0.04)
    clip = list(pol)
    clip[6] = 0.06
    h.policy = clip
    assert h.wait_source('policy', settle_to=pol[:6] + [0.04]), h.last_exec()
    # 8. e-stop by service, cleared by topic
    cli = test_node.create_client(SetBool, SET_ESTOP_SERVICE)
    assert cli.wait_for_service(timeout_sec=10)
    fut = cli.call_async(SetBool.Request(data=True))
    assert spin_until(test_node, fut.done, 5) and fut.result().success
    assert h.wait_source('hold'), log()
    assert spin_until(test_node, lambda: h.status and h.status[-1]['estop'] is True, 2)
    h.estop_pub.publish(Bool(data=False))
    t_clear = time.monotonic()
    assert spin_until(test_node, lambda: h.status and h.status[-1]['reason'] == REARM_WAIT, 3), h.status[-1:]
    spin_until(test_node, lambda: False, 0.3)
    assert set(h.sources_since(t_clear)) == {'hold'}, 'cleared is not re-armed: nothing moves'
    cli = test_node.create_client(Trigger, RESUME_SERVICE)
    assert cli.wait_for_service(timeout_sec=10)
    fut = cli.call_async(Trigger.Request())
    assert spin_until(test_node, fut.done, 5) and fut.result().success, fut.result()
    assert h.wait_source('policy'), log()
    # 9. episode services publish events; reset without a robot service reports failure
    for action in ('start', 'success'):
        cli = test_node.create_client(Trigger, episode_service(action))
        assert cli.wait_for_service(timeout_sec=10)
        fut = cli.call_async(Trigger.Request())
        assert spin_until(test_node, fut.done, 5) and fut.result().success
    assert spin_until(test_node, lambda: h.events[-2:] == ['start', 'success'], 3), h.events
    cli = test_node.create_client(Trigger, episode_service('reset'))
    assert cli.wait_for_service(timeout_sec=10)
    fut = cli.call_async(Trigger.Request())
    assert spin_until(test_node, fut.done, 5)
    assert not fut.result().success and 'not available' in fut.result().message
    # diagnostics: the mux reports itself, with the drop counters
    assert spin_until(test_node, lambda: any(d.name == 'hiors_command_mux' and 'dropped' in
                                             [kv.key for kv in d.values] for d in h.diag), 3)
    # command topic carries exactly what executed_action reports
    assert len(h.cmds) > 20 and all(len(c) == 7 for _, c in h.cmds)
    assert spin_until(test_node, lambda: np.allclose(h.cmds[-1][1], h.last_exec()[2]), 2)


def test_mux_policy_silent_holds_with_heartbeat(test_node, mux_proc):
    """Policy silent -> hold at measured position; the hold is resent at >= rate_hz."""
    h = Harness(test_node)
    pol = list(HOME)
    h.policy = pol
    assert h.wait_source('policy', timeout=20, settle_to=pol), mux_proc.log()
    h.policy = None
    assert h.wait_source('hold')
    t0 = time.monotonic()
    spin_until(test_node, lambda: False, 1.0)
    holds = [t for t, s, _ in h.execs if t >= t0 and s == 'hold']
    assert len(holds) >= 12, f'hold heartbeat too slow: {len(holds)} in 1 s at rate 20 Hz (10 = the YAML rate)'
