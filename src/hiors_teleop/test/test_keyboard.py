"""Keyboard teleop: key decoding, and the node driven through a real pseudo-terminal with the mux."""
import os
import pty
import time

import pytest

from hiors_common.testing import NodeProcess, spin_until
from hiors_teleop.keyboard_mapping import KeyboardMapper, parse_keymap
from hiors_teleop.mux import REARM_WAIT

from .test_mux_node import HOME, Harness


def test_keyboard_decoding():
    m = KeyboardMapper()
    inp, _ = m.feed(b' qqa')
    assert inp.takeover and inp.joint_step[0] == pytest.approx(0.05)
    inp, _ = m.feed(b'\x1b[A]g')          # arrow-key escape sequence ignored
    assert inp.events == ['success'] and inp.gripper_step == pytest.approx(0.005) and inp.joint_step is None
    inp, want_help = m.feed(b'wh', mode='ee')
    assert inp.ee_step[1] == pytest.approx(0.01) and want_help
    assert m.feed(b'p')[0].estop is True and m.feed(b'P')[0].estop is False and m.feed(b'pP')[0].estop is True
    assert m.feed(b'q')[0].estop is None
    inp, _ = m.feed(b' Z')
    assert not inp.takeover and m.unknown == ['Z']
    with pytest.raises(ValueError):
        parse_keymap(['q=+7'])
    with pytest.raises(ValueError):
        parse_keymap(['q=start', 'q=abort'])


def test_keyboard_node_through_pty(test_node):
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)
    mux = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.1', '-p', 'rate_hz:=20.0'],
        log_path=f'/tmp/hiors-test-kb-mux-{os.getpid()}.log').start()
    kb = NodeProcess('hiors_teleop.keyboard_teleop_node', ros_args=[
        '-p', f'tty_path:={slave_name}', '-p', 'rate_hz:=20.0']).start()
    try:
        h = Harness(test_node)
        h.policy = list(HOME)
        assert h.wait_source('policy', timeout=25, settle_to=HOME), mux.log() + kb.log()
        assert spin_until(test_node, lambda: 'keys:' in kb.log(), 10), kb.log()
        os.write(master, b' ')
        assert h.wait_source('human', timeout=5), kb.log()
        os.write(master, b'qqq')
        assert spin_until(test_node, lambda: abs(h.last_exec()[2][0] - (HOME[0] + 0.15)) < 1e-6, 5), h.last_exec()
        os.write(master, b'g')
        assert spin_until(test_node, lambda: 'success' in h.events, 3), kb.log()
        os.write(master, b' ')
        assert h.wait_source('policy', timeout=5, settle_to=HOME), mux.log()
        os.write(master, b'p')                               # e-stop from the keyboard
        assert h.wait_source('hold', timeout=5), kb.log()
        assert spin_until(test_node, lambda: h.status and h.status[-1]['estop'] is True, 3)
        os.write(master, b'P')                               # cleared: nothing moves until re-armed
        t_clear = time.monotonic()
        assert spin_until(test_node, lambda: h.status and h.status[-1]['reason'] == REARM_WAIT, 3), h.status[-1:]
        spin_until(test_node, lambda: False, 0.5)
        assert set(h.sources_since(t_clear)) == {'hold'}
        # a takeover press re-arms; then the terminal gone mid-takeover -> hold, never the policy
        os.write(master, b' ')
        assert h.wait_source('human', timeout=5), kb.log()
        os.close(master)
        master = None
        t0 = time.monotonic()
        assert h.wait_source('hold', timeout=5), mux.log()
        spin_until(test_node, lambda: False, 0.4)
        assert 'policy' not in h.sources_since(t0)
        assert 'device lost during takeover' in kb.log()
    finally:
        if master is not None:
            os.close(master)
        assert kb.stop() == 0, kb.log()
        assert mux.stop() == 0, mux.log()
        os.close(slave)
