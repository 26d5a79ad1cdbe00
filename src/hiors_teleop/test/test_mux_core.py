"""CommandMux decisions without DDS: priority, limits, blending, watchdog, e-stop, resync."""
import math

import numpy as np
import pytest

from hiors_teleop.mux import (HANDBACK_WAIT, HOLD, HUMAN, POLICY, REARM_WAIT, TAKEOVER_WAIT, TELEOP_STALE, CommandMux,
                              MuxConfig)

HOME = np.array([0.0, 0.3, -0.3, 0.0, 0.5, 0.0, 0.02])


def make(**kw):
    cfg = MuxConfig(**kw)
    mux = CommandMux(cfg)
    mux.update_joint_state(HOME, 0.0)
    return mux


def test_nothing_sent_without_joint_state():
    mux = CommandMux(MuxConfig())
    mux.submit(POLICY, HOME, 0.0)
    assert mux.step(0.0) is None
    mux.update_joint_state(HOME, 0.01)
    out = mux.step(0.02)
    assert out.source == POLICY and np.allclose(out.command, HOME)


def test_priority_human_over_policy_and_back():
    mux = make(blend_time_s=0.0, velocity_limit=[100.0] * 7)
    pol = HOME + 0.01
    hum = HOME - 0.01
    mux.submit(POLICY, pol, 0.0)
    assert mux.step(0.0).source == POLICY
    mux.submit(HUMAN, hum, 0.05)
    assert mux.step(0.05).source == POLICY, 'teleop commands without intervention are ignored'
    mux.set_intervention(True, 0.1)
    mux.submit(POLICY, pol, 0.1)
    out = mux.step(0.1)
    assert out.source == HUMAN and np.allclose(out.command, hum)
    mux.set_intervention(False, 0.2)
    mux.submit(POLICY, pol, 0.2)
    out = mux.step(0.2)
    assert out.source == POLICY and np.allclose(out.command, pol)


@pytest.mark.parametrize('bad,reason', [
    ([math.nan] * 7, 'NaN'), ([0.0] * 6, 'wrong length'), ([0, 0, 0, 0, 0, 0, math.inf], 'NaN'),
    ([9.0, 0, 0, 0, 0, 0, 0.01], 'out of range'), ('abc', 'not numeric')])
def test_bad_commands_dropped_and_counted(bad, reason):
    mux = make()
    mux.submit(POLICY, HOME, 0.0)
    ok, why = mux.submit(POLICY, bad, 0.01)
    assert not ok and reason in why
    assert sum(mux.dropped.values()) == 1
    out = mux.step(0.02)
    assert np.allclose(out.command, HOME), 'the last good command stays in force'


def test_position_clip_within_tolerance():
    mux = make(blend_time_s=0.0, velocity_limit=[100.0] * 7)
    cmd = HOME.copy()
    cmd[6] = 0.04 + 0.03      # gripper 3 cm past its limit: inside the 5 cm tolerance -> clipped
    ok, _ = mux.submit(POLICY, cmd, 0.0)
    assert ok
    assert mux.step(0.0).command[6] == pytest.approx(0.04)


def test_velocity_limit():
    mux = make(blend_time_s=0.0, rate_hz=10.0)
    target = HOME.copy()
    target[0] += 1.0
    mux.submit(POLICY, target, 0.0)
    seen = []
    for k in range(12):
        mux.submit(POLICY, target, 0.1 * k)
        seen.append(mux.step(0.1 * k).command[0])
    steps = np.diff([HOME[0]] + seen)
    assert np.all(steps <= 1.5 * 0.1 + 1e-9)
    assert seen[-1] == pytest.approx(HOME[0] + 1.0)


def _takeover_joint2(mux, far):
    """Policy at HOME, then a takeover towards `far`: joint2 of the next 7 outputs (0.1 s apart)."""
    mux.submit(POLICY, HOME, 0.0)
    mux.step(0.0)
    mux.set_intervention(True, 0.1)
    outs = []
    for k in range(1, 8):
        mux.submit(HUMAN, far, 0.1 * k)
        outs.append(mux.step(0.1 * k).command[1])
    return outs


FAR = HOME + np.array([0.0, 0.4, 0, 0, 0, 0, 0])


def test_takeover_is_immediate_within_the_velocity_limit():
    outs = _takeover_joint2(make(velocity_limit=[1.0] * 7), FAR)     # default takeover_blend_s 0
    assert outs[0] == pytest.approx(HOME[1] + 0.1), 'toward the human at once, at the velocity limit'
    assert outs[3] == pytest.approx(FAR[1])


def test_takeover_blends_without_jump():
    outs = _takeover_joint2(make(blend_time_s=0.5, takeover_blend_s=0.5, velocity_limit=[100.0] * 7), FAR)
    assert outs[0] == pytest.approx(HOME[1]), 'first takeover output starts where the robot was'
    assert np.all(np.diff(outs) <= 0.4 * 0.1 / 0.5 + 1e-9)
    assert outs[-1] == pytest.approx(FAR[1])


def test_watchdog_policy_silent_holds_at_measured():
    mux = make(watchdog_timeout_s=0.3)
    mux.submit(POLICY, HOME, 0.0)
    assert mux.step(0.0).source == POLICY
    measured = HOME + 0.005
    mux.update_joint_state(measured, 0.35)
    out = mux.step(0.4)
    assert out.source == HOLD and 'policy silent' in out.reason
    assert np.allclose(out.command, measured)
    mux.submit(POLICY, HOME, 0.5)
    assert mux.step(0.5).source == POLICY


def test_frozen_device_mid_takeover_holds_not_policy_and_recovers():
    mux = make(watchdog_timeout_s=0.3, blend_time_s=0.0)
    mux.set_intervention(True, 0.0)
    mux.submit(HUMAN, HOME, 0.0)
    assert mux.step(0.0).source == HUMAN
    for k in range(1, 10):      # the policy keeps publishing the whole time
        mux.submit(POLICY, HOME + 0.1, 0.1 * k)
    out = mux.step(0.9)
    assert out.source == HOLD and 'NOT returning to the policy' in out.reason
    mux.submit(HUMAN, HOME + 0.02, 1.0)   # replug
    assert mux.step(1.0).source == HUMAN


def test_hand_back_waits_for_a_new_policy_command_not_a_stale_one():
    mux = make(watchdog_timeout_s=0.5, blend_time_s=0.0, velocity_limit=[100.0] * 7)
    old = HOME + 0.05
    mux.submit(POLICY, old, 0.0)                 # the policy's last command before the takeover
    assert mux.step(0.0).source == POLICY
    mux.set_intervention(True, 0.05)
    mux.submit(HUMAN, HOME, 0.1)
    assert mux.step(0.1).source == HUMAN
    mux.set_intervention(False, 0.2)             # short takeover: `old` is 0.2 s old, within the watchdog
    out = mux.step(0.2)
    assert out.source == HOLD and out.reason == HANDBACK_WAIT and np.allclose(out.command, HOME)
    assert mux.events[-1][0] == 'info', 'a normal hand-back is not a warning'
    new = HOME + 0.01
    mux.submit(POLICY, new, 0.25)
    out = mux.step(0.25)
    assert out.source == POLICY and np.allclose(out.command, new)
    # Nothing from the policy within the watchdog after a hand-back: now it is a silent policy.
    mux.set_intervention(True, 0.3)
    mux.submit(HUMAN, HOME, 0.3)
    mux.step(0.3)
    mux.set_intervention(False, 0.4)
    assert mux.step(0.6).reason == HANDBACK_WAIT
    out = mux.step(0.95)
    assert out.source == HOLD and 'policy silent' in out.reason and mux.events[-1][0] == 'warn'


def test_takeover_waits_for_the_device_then_warns_when_it_stays_silent():
    mux = make(watchdog_timeout_s=0.5)
    mux.submit(HUMAN, HOME, 0.0)                 # the device published once, long ago
    mux.submit(POLICY, HOME, 1.0)
    mux.step(1.0)
    mux.set_intervention(True, 1.0)
    assert mux.step(1.1).reason == TAKEOVER_WAIT and mux.events[-1][0] == 'info'
    out = mux.step(1.6)
    assert out.source == HOLD and 'NOT returning to the policy' in out.reason


def test_estop_overrides_everything_and_needs_rearm():
    mux = make()
    mux.set_intervention(True, 0.0)
    mux.submit(HUMAN, HOME, 0.0)
    mux.step(0.0)
    mux.set_estop(True, 0.1)
    mux.submit(HUMAN, HOME + 0.1, 0.1)
    out = mux.step(0.1)
    assert out.source == HOLD and out.reason == 'e-stop'
    assert mux.rearm(0.15) == (False, 'e-stop still engaged: clear it first')
    # cleared with the deadman still held: the device keeps sending, nothing moves
    mux.set_estop(False, 0.2)
    for t in (0.2, 0.3, 0.4):
        mux.submit(HUMAN, HOME + 0.1, t)
        out = mux.step(t)
        assert out.source == HOLD and out.reason == REARM_WAIT and np.allclose(out.command, HOME)
    # release: still nothing (the policy does not take over by itself either)
    mux.set_intervention(False, 0.5)
    mux.submit(POLICY, HOME + 0.05, 0.5)
    assert mux.step(0.5).reason == REARM_WAIT
    # press again = re-armed; only commands sent since the press count
    mux.set_intervention(True, 0.6)
    assert mux.step(0.6).reason == TAKEOVER_WAIT
    mux.submit(HUMAN, HOME, 0.65)
    assert mux.step(0.65).source == HUMAN
    msgs = [m for _, m in mux.drain_events()]
    assert any('E-STOP' in m for m in msgs) and any('re-armed (takeover pressed)' in m for m in msgs)


def test_estop_cleared_then_resume_hands_the_policy_back():
    mux = make()
    mux.submit(POLICY, HOME, 0.0)
    assert mux.step(0.0).source == POLICY
    mux.set_estop(True, 0.1)
    mux.set_estop(False, 0.2)
    mux.submit(POLICY, HOME, 0.2)
    assert mux.step(0.25).reason == REARM_WAIT
    assert mux.rearm(0.3) == (True, 're-armed (resume)')
    assert mux.step(0.3).reason == HANDBACK_WAIT, 'a command from before the resume does not count'
    mux.submit(POLICY, HOME, 0.35)
    assert mux.step(0.35).source == POLICY


def test_teleop_stale_holds_at_once():
    mux = make()
    mux.set_intervention(True, 0.0)
    mux.submit(HUMAN, HOME, 0.0)
    assert mux.step(0.0).source == HUMAN
    mux.set_teleop_stale(True, 0.05)      # well inside the watchdog: the device said so
    out = mux.step(0.05)
    assert out.source == HOLD and out.reason == TELEOP_STALE
    mux.set_teleop_stale(False, 0.1)
    mux.submit(HUMAN, HOME, 0.1)
    assert mux.step(0.1).source == HUMAN


def test_joint_state_jump_resyncs_limiter():
    mux = make(blend_time_s=0.0)
    far = HOME.copy()
    far[0] = 1.5
    mux.update_joint_state(far, 0.0)        # e.g. arm was at 1.5
    mux.resync(0.0)
    mux.submit(POLICY, far, 0.0)
    mux.step(0.0)
    mux.update_joint_state(HOME, 0.1)       # sim reset teleported the arm home
    mux.submit(POLICY, HOME, 0.1)
    out = mux.step(0.1)
    assert np.allclose(out.command, HOME), 'no crawl back from the pre-reset position'


def test_config_validation():
    with pytest.raises(ValueError):
        CommandMux(MuxConfig(position_lower=[0.0] * 6))
    with pytest.raises(ValueError):
        CommandMux(MuxConfig(velocity_limit=[0.0] * 7))
