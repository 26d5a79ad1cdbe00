"""evdev gamepad: decoding captured kernel event tuples, and (where /dev/uinput is writable) a
virtual pad created with python-evdev UInput driving the node + mux, unplugged and replugged."""
import os
import time

import numpy as np
import pytest

from hiors_common.testing import NodeProcess, spin_until
from hiors_teleop.evdev_decoding import EV_ABS, EV_KEY, EV_SYN, SYN_DROPPED, SYN_REPORT, EvdevGamepadDecoder
from hiors_teleop.joy_mapping import JoyMapConfig, JoyMapper

from .test_mux_node import HOME, Harness

BTN_TL, BTN_SOUTH, ABS_Y, ABS_X = 310, 304, 1, 0
# Captured from an Xbox-style pad (xpad): press LB, push left stick up, press A, release all.
CAPTURED = [
    (EV_KEY, BTN_TL, 1), (EV_SYN, SYN_REPORT, 0),
    (EV_ABS, ABS_Y, -20000), (EV_SYN, SYN_REPORT, 0),
    (EV_ABS, ABS_Y, -32768), (EV_ABS, ABS_X, 1200), (EV_SYN, SYN_REPORT, 0),
    (EV_KEY, BTN_SOUTH, 1), (EV_SYN, SYN_REPORT, 0),
    (EV_KEY, BTN_SOUTH, 2), (EV_SYN, SYN_REPORT, 0),          # auto-repeat
    (EV_KEY, BTN_SOUTH, 0), (EV_ABS, ABS_Y, 0), (EV_SYN, SYN_REPORT, 0),
    (EV_KEY, BTN_TL, 0), (EV_SYN, SYN_REPORT, 0),
]


def decode(events, **kw):
    dec = EvdevGamepadDecoder(axis_invert=[False, True, False, True, False, False], **kw)
    mapper = JoyMapper(JoyMapConfig())
    out = []
    for ev in events:
        frame = dec.feed(*ev)
        if frame is not None:
            out.append((frame, mapper.map(frame[0], frame[1])))
    return dec, out


def test_captured_events_decode_to_takeover_motion_and_label():
    dec, out = decode(CAPTURED)
    assert len(out) == 7 and dec.frames == 7
    inputs = [inp for _, inp in out]
    assert [i.takeover for i in inputs] == [True] * 6 + [False]
    assert inputs[1].joint_vel[0] > 0.2, 'stick up (evdev negative Y) -> joint1 positive'
    assert inputs[2].joint_vel[0] == pytest.approx(0.5) and inputs[2].joint_vel[1] == 0.0, 'X inside deadzone'
    assert [i.events for i in inputs] == [[], [], [], ['success'], [], [], []]
    assert inputs[5].joint_vel[0] == 0.0


def test_absinfo_scaling_and_syn_dropped():
    dec = EvdevGamepadDecoder(absinfo={2: (0, 1023)})
    dec.feed(EV_ABS, 2, 1023)
    assert dec.feed(EV_SYN, SYN_REPORT, 0)[0][4] == pytest.approx(1.0)
    dec.feed(EV_SYN, SYN_DROPPED, 0)
    dec.feed(EV_ABS, 2, 0)
    assert dec.feed(EV_SYN, SYN_REPORT, 0) is None and dec.needs_resync, 'frames after a drop are invalid'
    dec.set_state({2: 512}, [BTN_SOUTH])
    assert not dec.needs_resync and dec.buttons[0] == 1 and abs(dec.axes[4]) < 0.01


def _uinput_problem():
    if not os.path.exists('/dev/uinput'):
        return ('/dev/uinput does not exist on this machine '
                '(uinput module not loaded, or a container without the device)')
    if not os.access('/dev/uinput', os.W_OK):
        return '/dev/uinput is not writable by this user'
    try:
        import evdev  # noqa: F401
    except ImportError:
        return 'python-evdev is not installed'
    return None


@pytest.mark.skipif(_uinput_problem() is not None, reason=str(_uinput_problem()))
def test_uinput_pad_drives_node_and_unplug(test_node):
    from evdev import AbsInfo, UInput, ecodes

    def make_pad():
        caps = {ecodes.EV_KEY: [304, 305, 307, 308, 310, 311, 314, 315, 316, 317, 318],
                ecodes.EV_ABS: [(c, AbsInfo(0, -32768, 32767, 16, 128, 0)) for c in (0, 1, 3, 4)]
                + [(c, AbsInfo(0, 0, 1023, 0, 0, 0)) for c in (2, 5)]}
        return UInput(caps, name='hiors-test-pad')
    pad = make_pad()
    time.sleep(0.3)
    mux = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.1', '-p', 'rate_hz:=20.0'],
        log_path=f'/tmp/hiors-test-evdev-mux-{os.getpid()}.log').start()
    node = NodeProcess('hiors_teleop.evdev_teleop_node', ros_args=[
        '-p', 'device_name_contains:=hiors-test-pad', '-p', 'reconnect_period_s:=0.2']).start()
    try:
        h = Harness(test_node)
        h.policy = list(HOME)
        assert h.wait_source('policy', timeout=25, settle_to=HOME), mux.log()
        assert spin_until(test_node, lambda: 'evdev gamepad:' in node.log(), 10), node.log()
        pad.write(ecodes.EV_KEY, 310, 1)
        pad.write(ecodes.EV_ABS, 1, -32768)
        pad.syn()
        assert h.wait_source('human', timeout=5), node.log()
        assert spin_until(test_node, lambda: h.last_exec()[2][0] > HOME[0] + 0.05, 3)
        pad.close()                    # unplug mid-takeover
        h.q = list(h.last_exec()[2])
        t0 = time.monotonic()
        assert h.wait_source('hold', timeout=5), mux.log()
        assert 'policy' not in h.sources_since(t0)
        pad = make_pad()               # replug, LB still held
        pad.write(ecodes.EV_KEY, 310, 1)
        pad.syn()
        assert h.wait_source('human', timeout=5), node.log()
        pad.write(ecodes.EV_KEY, 310, 0)
        pad.syn()
        assert h.wait_source('policy', timeout=5), mux.log()
        assert np.isfinite(h.last_exec()[2]).all()
    finally:
        pad.close()
        assert node.stop() == 0, node.log()
        assert mux.stop() == 0, mux.log()
