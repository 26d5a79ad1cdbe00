"""Joy teleop node + mux as separate processes over real DDS: Joy messages -> takeover -> human
commands on the robot topic; labels; the pad going silent mid-takeover -> hold (not policy);
Joy back -> human again; deadman released -> policy."""
import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from hiors_common import topics
from hiors_common.testing import NodeProcess, spin_until
from hiors_teleop.mux import TELEOP_STALE

from .test_mux_node import HOME, Harness

LB, A, B, START, BACK = 9, 0, 1, 6, 4


@pytest.fixture
def procs():
    mux = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.2', '-p', 'rate_hz:=20.0',
        '-p', 'reset_service:=/test_joy/reset'], log_path=f'/tmp/hiors-test-joy-mux-{id(object())}.log').start()
    joy = NodeProcess('hiors_teleop.joy_teleop_node', ros_args=[
        '-p', 'device_timeout_s:=0.3', '-p', 'reset_service:=/test_joy/reset']).start()
    yield mux, joy
    assert joy.stop() == 0, joy.log()
    assert mux.stop() == 0, mux.log()


def test_joy_takeover_labels_unplug(test_node, procs):
    mux, joy = procs
    h = Harness(test_node)
    ints = []
    test_node.create_subscription(Bool, topics.INTERVENTION, lambda m: ints.append(m.data), topics.event_qos())
    joy_pub = test_node.create_publisher(Joy, topics.JOY, 10)
    state = {'axes': [0.0] * 6, 'buttons': [0] * 11, 'on': True}

    def send_joy():
        if state['on']:
            joy_pub.publish(Joy(axes=[float(a) for a in state['axes']], buttons=list(state['buttons'])))
    test_node.create_timer(0.05, send_joy)          # the joy driver's 20 Hz autorepeat
    resets = []

    def on_reset(req, resp):
        resets.append(time.monotonic())
        resp.success, resp.message = True, 'arm at home'
        return resp
    test_node.create_service(Trigger, '/test_joy/reset', on_reset)
    h.policy = list(HOME)
    assert h.wait_source('policy', timeout=25, settle_to=HOME), mux.log() + joy.log()
    # back = reset: the robot's reset service is called; start = 'start' event
    state['buttons'][BACK] = 1
    state['buttons'][START] = 1
    assert spin_until(test_node, lambda: resets and 'start' in h.events, 5), joy.log()
    state['buttons'][BACK] = 0
    state['buttons'][START] = 0
    assert spin_until(test_node, lambda: 'reset done: arm at home' in joy.log(), 5), joy.log()
    # takeover: hold LB and push the left stick up -> joint1 moves positive
    state['buttons'][LB] = 1
    state['axes'][1] = 1.0
    assert h.wait_source('human', timeout=5), joy.log()
    assert spin_until(test_node, lambda: h.last_exec()[2][0] > HOME[0] + 0.05, 3.0), h.last_exec()
    assert True in ints
    # labels: A = success (once per press)
    state['buttons'][A] = 1
    assert spin_until(test_node, lambda: 'success' in h.events, 3.0), joy.log()
    spin_until(test_node, lambda: False, 0.3)
    assert h.events.count('success') == 1
    state['buttons'][A] = 0
    # unplug mid-takeover: Joy stops -> hold, never policy
    state['on'] = False
    h.q = list(h.last_exec()[2])
    t_unplug = time.monotonic()
    assert h.wait_source('hold', timeout=3.0), mux.log()
    spin_until(test_node, lambda: False, 0.5)
    assert 'policy' not in h.sources_since(t_unplug)
    assert 'device lost during takeover' in joy.log()
    # replug (still holding LB): human again, continuing from the held position
    state['axes'][1] = 0.0
    held = list(h.last_exec()[2])
    state['on'] = True
    assert h.wait_source('human', timeout=3.0), joy.log()
    assert np.allclose(h.last_exec()[2][:6], held[:6], atol=0.02)
    # release the deadman -> policy
    state['buttons'][LB] = 0
    assert h.wait_source('policy', timeout=3.0, settle_to=HOME), mux.log()
    assert ints[-1] is False


def test_joy_estop_needs_rearm_and_unplug_stops_at_once(test_node, procs):
    """Issue 14 (1, 2): e-stop cleared with the deadman held -> nothing moves until the deadman is
    released and pressed again; the pad unplugged at full deflection -> the command stops within
    a few Joy periods (bound 0.05 rad) and the mux holds on the device's explicit 'stale'."""
    mux, joy = procs
    h = Harness(test_node)
    joy_pub = test_node.create_publisher(Joy, topics.JOY, 10)
    estop_pub = test_node.create_publisher(Bool, topics.ESTOP, 10)
    state = {'axes': [0.0] * 6, 'buttons': [0] * 11, 'on': True, 'last': 0.0}
    done = threading.Event()

    def joy_driver():             # the joy driver's steady 20 Hz autorepeat (its own thread, as its own process)
        while not done.wait(0.05):
            if state['on']:
                joy_pub.publish(Joy(axes=[float(a) for a in state['axes']], buttons=list(state['buttons'])))
                state['last'] = time.monotonic()

    def follow():                 # a position-controlled arm: the measured position tracks the command
        if h.execs:
            h.q = list(h.last_exec()[2])
    driver = threading.Thread(target=joy_driver, daemon=True)
    driver.start()
    test_node.create_timer(0.02, follow)
    try:
        _estop_and_unplug(test_node, mux, joy, h, state, estop_pub)
    finally:
        done.set()
        driver.join(1.0)


def _estop_and_unplug(test_node, mux, joy, h, state, estop_pub):
    h.policy = list(HOME)
    assert h.wait_source('policy', timeout=25, settle_to=HOME), mux.log() + joy.log()
    h.policy = None                        # the policy node is silent from here on
    state['buttons'][LB] = 1
    state['axes'][1] = 1.0                 # full deflection: joint1 at joint_speed
    assert h.wait_source('human', timeout=5), joy.log()
    assert spin_until(test_node, lambda: h.last_exec()[2][0] > HOME[0] + 0.05, 3.0), h.last_exec()
    estop_pub.publish(Bool(data=True))
    assert h.wait_source('hold', timeout=3.0), mux.log()
    spin_until(test_node, lambda: False, 0.5)
    estop_pub.publish(Bool(data=False))    # cleared, the deadman and the stick still held
    assert spin_until(test_node, lambda: h.status and h.status[-1]['estop'] is False, 3), h.status[-1:]
    t_clear = time.monotonic()
    spin_until(test_node, lambda: False, 1.5)
    after = [p for t, s, p in h.execs if t >= t_clear]
    assert after and {s for t, s, _ in h.execs if t >= t_clear} == {'hold'}, mux.log()
    assert max(abs(p[0] - after[0][0]) for p in after) == 0.0, 'moved after the clear without a re-arm'
    assert 'release the takeover and press it again' in joy.log()
    state['buttons'][LB] = 0               # release: still nothing (no policy either)
    spin_until(test_node, lambda: False, 0.4)
    assert {s for t, s, _ in h.execs if t >= t_clear} == {'hold'}
    start = list(h.last_exec()[2])
    state['buttons'][LB] = 1               # press again = re-armed, from the measured position
    t_press = time.monotonic()
    assert h.wait_source('human', timeout=3.0), mux.log() + joy.log()
    first = next(p for t, s, p in h.execs if t >= t_press and s == 'human')
    assert abs(first[0] - start[0]) < 0.05, (first, start)
    assert spin_until(test_node, lambda: h.last_exec()[2][0] > start[0] + 0.05, 3.0)
    spin_until(test_node, lambda: False, 0.4)     # past the mux's takeover blend: the stick's own speed
    # unplug at full deflection
    state['on'] = False
    t_last = state['last']
    at_last = [p for t, s, p in h.execs if t <= t_last][-1][0]
    assert spin_until(test_node, lambda: h.last_exec()[1] == 'hold', 1.0), mux.log()
    t_hold = next(t for t, s, _ in h.execs if t > t_last and s == 'hold')
    spin_until(test_node, lambda: False, 0.5)
    moved = max(abs(p[0] - at_last) for t, s, p in h.execs if t > t_last)
    print(f'unplugged at full deflection: {moved:.4f} rad further, hold {1000 * (t_hold - t_last):.0f} ms '
          'after the last Joy')
    # the goal (< 0.05 rad, hold < 0.2 s) is measured in bench_teleop; here a bound that load cannot break
    assert moved < 0.1, f'{moved:.3f} rad after the last Joy message' + joy.log()[-1500:]
    assert 'policy' not in h.sources_since(t_last)
    assert h.status and any(s.get('reason') == TELEOP_STALE for s in h.status), h.status[-2:]
