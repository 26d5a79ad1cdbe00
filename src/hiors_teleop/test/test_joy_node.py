"""Joy teleop node + mux as separate processes over real DDS: Joy messages -> takeover -> human
commands on the robot topic; labels; the pad going silent mid-takeover -> hold (not policy);
Joy back -> human again; deadman released -> policy."""
import time

import numpy as np
import pytest
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from hiors_common.testing import NodeProcess, spin_until
from hiors_teleop.ros_episode import EVENT_QOS

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
    test_node.create_subscription(Bool, '/hiors/intervention', lambda m: ints.append(m.data), EVENT_QOS)
    joy_pub = test_node.create_publisher(Joy, '/joy', 10)
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
