"""SpaceMouse: HID report decoding, takeover logic, and the node reading real report bytes from a
FIFO in place of /dev/hidrawN (same read path), with the mux: takeover, auto hand-back, unplug."""
import os
import struct
import time

import numpy as np
import pytest
from std_msgs.msg import Float64MultiArray

from hiors_common.testing import NodeProcess, spin_until
from hiors_common.topics import TELEOP_COMMAND
from hiors_teleop.spacemouse_decoding import SpaceMouseDecoder, SpaceMouseMapConfig, SpaceMouseMapper, find_hidraw

from .test_mux_node import HOME, Harness


def trans(x, y, z):
    return b'\x01' + struct.pack('<3h', x, y, z)


def rot(x, y, z):
    return b'\x02' + struct.pack('<3h', x, y, z)


# Reports in the documented format (bytes as hidraw returns them).
REPORTS = [
    bytes.fromhex('01 5e01 0000 0000'.replace(' ', '')),        # tx = +350
    bytes.fromhex('02 0000 a2fe 0000'.replace(' ', '')),        # ry = -350
    bytes.fromhex('03 0100'.replace(' ', '') + '00'),           # button 1 down
    bytes.fromhex('01 0000 0000 0000 0000 0000 2f00'.replace(' ', '')),   # six-axis: rz = 47
]


def test_report_decoding():
    d = SpaceMouseDecoder()
    assert d.feed(REPORTS[0]) and list(d.axes) == [350, 0, 0, 0, 0, 0]
    assert d.feed(REPORTS[1]) and list(d.axes) == [350, 0, 0, 0, -350, 0]
    assert d.feed(REPORTS[2]) and d.buttons == 1
    assert d.feed(REPORTS[3]) and list(d.axes) == [0, 0, 0, 0, 0, 47]
    assert not d.feed(b'\x07\x00\x00') and d.bad == 1
    stream = trans(1, 2, 3) + rot(4, 5, 6) + b'\x03\x02\x00'
    parts = d.split(stream)
    assert [p[0] for p in parts] == [1, 2, 3]
    for p in parts:
        d.feed(p)
    assert list(d.axes) == [1, 2, 3, 4, 5, 6] and d.buttons == 2
    assert d.split(b'\x03\x01\x00\x03\x00\x00') == [b'\x03\x01\x00', b'\x03\x00\x00'], 'press + release in one read'
    assert d.split(b'\x03\x01') == [b'\x03\x01'], 'a 2-byte button report alone'


def test_mapper_takeover_threshold_release_and_buttons():
    m = SpaceMouseMapper(SpaceMouseMapConfig(auto_release_s=1.0))
    assert not m.map([20, 0, 0, 0, 0, 0], 0, 0.0).takeover, 'below the motion threshold'
    inp = m.map([0, -350, 0, 0, 0, 0], 0, 0.1)     # push away (towards -ty)
    assert inp.takeover and inp.twist[0] == pytest.approx(0.1) and abs(inp.twist[1]) < 1e-12
    assert m.map([0] * 6, 0, 0.9).takeover
    assert not m.map([0] * 6, 0, 1.2).takeover, 'auto hand-back after 1 s at rest'
    assert m.map([0] * 6, 1, 2.0).takeover, 'button 1 = sticky takeover'
    assert m.map([0] * 6, 0, 9.0).takeover
    assert not m.map([0] * 6, 1, 9.1).takeover
    assert m.map([0] * 6, 3, 9.2).gripper_toggle
    assert not m.map([0] * 6, 3, 9.3).gripper_toggle, 'edge only'
    j = m.map([0, 0, 0, 0, 0, 350], 0, 10.0, mode='joint')
    assert j.joint_vel[5] == pytest.approx(-0.5)


def test_find_hidraw_reads_sysfs(tmp_path):
    for name, hid_id in (('hidraw0', '0003:0000046D:0000C52B'), ('hidraw3', '0003:0000256F:0000C635')):
        (tmp_path / name / 'device').mkdir(parents=True)
        (tmp_path / name / 'device' / 'uevent').write_text(f'DRIVER=hid-generic\nHID_ID={hid_id}\n')
    assert find_hidraw(str(tmp_path)) == [('/dev/hidraw0', 0x046D, 0xC52B), ('/dev/hidraw3', 0x256F, 0xC635)]


def _open_writer(path):
    # O_RDWR never blocks on a FIFO and keeps it alive while the node (re)opens its end; closing it
    # gives the node end-of-file, as an unplugged hidraw device gives a read error.
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


def test_spacemouse_node_from_report_stream(test_node, tmp_path):
    fifo = str(tmp_path / 'hidraw-fake')
    os.mkfifo(fifo)
    mux = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.1', '-p', 'rate_hz:=20.0'],
        log_path=f'/tmp/hiors-test-sm-mux-{os.getpid()}.log').start()
    node = NodeProcess('hiors_teleop.spacemouse_teleop_node', ros_args=[
        '-p', f'device_path:={fifo}', '-p', 'mode:=joint', '-p', 'auto_release_s:=0.5',
        '-p', 'reconnect_period_s:=0.2']).start()
    w = None
    try:
        h = Harness(test_node)
        h.policy = list(HOME)
        assert h.wait_source('policy', timeout=25, settle_to=HOME), mux.log()
        w = _open_writer(fifo)
        os.write(w, trans(0, -350, 0))                 # push away -> joint1 + (joint mode map)
        assert h.wait_source('human', timeout=5), node.log()
        assert spin_until(test_node, lambda: h.last_exec()[2][0] > HOME[0] + 0.05, 3), h.last_exec()
        os.write(w, trans(0, 0, 0))                    # let go -> auto hand-back after 0.5 s
        assert h.wait_source('policy', timeout=5), node.log()
        os.write(w, trans(0, 350, 0) + rot(0, 0, 0))   # move again, then unplug
        assert h.wait_source('human', timeout=5), node.log()
        h.q = list(h.last_exec()[2])
        os.close(w)
        w = None
        t0 = time.monotonic()
        assert h.wait_source('hold', timeout=5), mux.log()
        spin_until(test_node, lambda: False, 0.6)     # longer than auto_release: still hold, not policy
        assert 'policy' not in h.sources_since(t0)
        assert 'device lost during takeover' in node.log()
        w = _open_writer(fifo)                         # replug
        os.write(w, trans(0, 350, 0))
        assert h.wait_source('human', timeout=5), node.log()
        assert np.isfinite(h.last_exec()[2]).all()
    finally:
        if w is not None:
            os.close(w)
        assert node.stop() == 0, node.log()
        assert mux.stop() == 0, mux.log()


def test_spacemouse_node_ee_mode_moves_tool_forward(test_node, tmp_path):
    """ee mode (the default): pushing the cap away moves the tool along robot +x via FK/IK."""
    kinematics = pytest.importorskip('hiors_sim.kinematics', reason='hiors_sim.kinematics not available')
    kin = kinematics.ArmKinematics()
    sim_home = [0.0, 0.5, 1.6, 0.0, 1.04, 0.0, 0.035]
    fifo = str(tmp_path / 'hidraw-fake')
    os.mkfifo(fifo)
    w = _open_writer(fifo)
    mux = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.1', '-p', 'rate_hz:=20.0'],
        log_path=f'/tmp/hiors-test-sm-ee-mux-{os.getpid()}.log').start()
    node = NodeProcess('hiors_teleop.spacemouse_teleop_node', ros_args=[
        '-p', f'device_path:={fifo}', '-p', 'reconnect_period_s:=0.2', '-p', 'auto_release_s:=0.0']).start()
    try:
        h = Harness(test_node)
        h.q = list(sim_home)
        h.policy = list(sim_home)
        teleop_cmds = []        # what the spacemouse node itself commands (before the mux's limiter)
        test_node.create_subscription(Float64MultiArray, TELEOP_COMMAND,
                                      lambda m: teleop_cmds.append(np.asarray(m.data, dtype=float)), 10)
        assert h.wait_source('policy', timeout=25, settle_to=sim_home), mux.log()
        p0 = kin.fk(np.asarray(sim_home[:6]))[0]
        os.write(w, trans(0, -350, 0))          # full push away: 0.1 m/s along +x
        assert h.wait_source('human', timeout=5), node.log()
        # The takeover starts from the measured joints (here: sim_home), not from anywhere else.
        assert spin_until(test_node, lambda: teleop_cmds, 5), node.log()
        start = kin.fk(teleop_cmds[0][:6])[0] - p0
        assert np.linalg.norm(start) < 0.015, (start, teleop_cmds[0], node.log())

        def pushed():
            return bool(teleop_cmds) and kin.fk(teleop_cmds[-1][:6])[0][0] - p0[0] > 0.03
        assert spin_until(test_node, pushed, 5), (teleop_cmds[-1:], node.log())
        os.write(w, trans(0, 0, 0))             # let go: the target stays where the push left it
        spin_until(test_node, lambda: False, 0.3)
        target = teleop_cmds[-1]
        v = kin.fk(target[:6])[0] - p0
        assert v[0] > 0.03 and abs(v[1]) < 0.005 and abs(v[2]) < 0.005, (v, target)
        # ...and the mux carries the arm there (velocity-limited, then exactly).
        assert spin_until(test_node, lambda: h.last_exec()[1] == 'human' and
                          np.allclose(h.last_exec()[2], teleop_cmds[-1], atol=1e-6), 5), \
            (h.last_exec(), teleop_cmds[-1], mux.log())
    finally:
        os.close(w)
        assert node.stop() == 0, node.log()
        assert mux.stop() == 0, mux.log()
