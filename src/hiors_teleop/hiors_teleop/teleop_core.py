"""Device-independent teleop core (ROS-agnostic): turns what a device decoder reports (a
`DeviceInput`) into absolute 7-d joint targets and a takeover flag, the same for every device.

Modes:
- joint: `joint_vel` (rad/s per arm joint) is integrated onto the target.
- ee: `twist` (base-frame linear m/s + angular rad/s) is applied to FK(target), then IK.
- ee_abs: `ee_offset` = (position offset, rotation offset quaternion) relative to where the end
  effector was when the takeover started (VR controllers: pose relative to the trigger press).
The gripper follows `gripper_vel` (m/s per finger) or `gripper_abs` (0 closed .. 1 open).

The target starts from the measured joint position at every takeover (and after a device comes
back), so the first command equals where the robot is. Kinematics is injected: any object with
fk(q6) -> (pos(3), quat_wxyz(4)) and ik(pos, quat_wxyz, q_init6) -> q6 (hiors_sim.kinematics).

E-stop: while it is engaged (`set_estop`, from the e-stop topic or the device's own request) the
target is frozen and nothing is sent; after it clears with the takeover still held nothing is sent
until the takeover is released and pressed again, which restarts the target from the measured
position (the mux treats that press as the re-arm).

Device loss/freeze mid-takeover: no more commands and the intervention flag stays true, so the mux
holds position instead of handing the robot back to the policy; the next healthy input resumes
(takeover still held) or hands back (takeover released).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hiors_common.robot import load_arm_kinematics

from .episode import normalise


# ---- small quaternion helpers (wxyz) --------------------------------------------------------------
def quat_mul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw])


def quat_conj(q):
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_from_rotvec(v):
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = v / angle
    return np.concatenate([[math.cos(angle / 2)], axis * math.sin(angle / 2)])


def quat_normalise(q):
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f'invalid quaternion {q}')
    return q / n


def quat_angle(q):
    return 2.0 * math.acos(min(1.0, abs(float(quat_normalise(q)[0]))))


# ---- device input ---------------------------------------------------------------------------------
@dataclass
class DeviceInput:
    """One decoded device sample. Everything optional except `takeover`."""
    takeover: bool = False
    joint_vel: np.ndarray | None = None        # (6,) rad/s
    twist: np.ndarray | None = None            # (6,) vx vy vz wx wy wz in the robot base frame
    ee_offset: tuple | None = None             # (dpos(3), dquat_wxyz(4)) relative to takeover start
    joint_step: np.ndarray | None = None       # (6,) rad, applied once (key presses)
    ee_step: np.ndarray | None = None          # (6,) m / rad in the base frame, applied once
    gripper_vel: float | None = None           # m/s per finger (+ opens)
    gripper_step: float | None = None          # m, applied once
    gripper_toggle: bool = False               # open if closed(ish), else close
    gripper_abs: float | None = None           # 0 closed .. 1 open
    events: list = field(default_factory=list)  # episode actions triggered by this sample
    estop: bool | None = None                  # True = engage the mux e-stop, False = clear it
    dt: float | None = None                    # s to integrate the velocities over (None = since the last tick)


class InputCadence:
    """When a streaming device (a Joy driver's autorepeat) is late: its period is measured from its
    own arrivals (the longest of the recent intervals, so bursts of change events do not shrink it)."""

    def __init__(self, timeout_s: float, window: int = 20):
        self.timeout_s = timeout_s
        self._intervals = []
        self._window = window
        self.last_t = None

    def arrived(self, now: float):
        if self.last_t is not None and 0 < now - self.last_t <= self.timeout_s:
            self._intervals = (self._intervals + [now - self.last_t])[-self._window:]
        self.last_t = now

    def period(self) -> float | None:
        return max(self._intervals) if len(self._intervals) >= 3 else None

    def limit(self, periods: float) -> float:
        """Seconds `periods` expected periods last (the timeout until the period is known)."""
        p = self.period()
        return self.timeout_s if p is None else min(self.timeout_s, periods * p)

    def late(self, now: float, periods: float) -> bool:
        """More than `periods` expected periods since the last arrival."""
        return now - self.last_t > self.limit(periods)


@dataclass
class TickResult:
    command: np.ndarray | None = None      # absolute 7-d target to publish (None = publish nothing)
    intervention: bool | None = None       # value to publish (None = unchanged, no need to publish)
    events: list = field(default_factory=list)
    estop: bool | None = None              # publish on the e-stop topic (None = nothing)
    messages: list = field(default_factory=list)   # (level, text) for the node to log


@dataclass
class TeleopLimits:
    lower: np.ndarray
    upper: np.ndarray
    gripper_open: float = 0.04
    gripper_closed: float = 0.0


class TeleopCore:
    def __init__(self, limits: TeleopLimits, mode: str = 'joint', kinematics=None,
                 max_dt: float = 0.1, max_ik_step: float = 0.5):
        if mode not in ('joint', 'ee', 'ee_abs'):
            raise ValueError(f"mode must be 'joint', 'ee' or 'ee_abs', not {mode!r}")
        if mode != 'joint' and kinematics is None:
            raise ValueError(f'mode {mode!r} needs kinematics (fk/ik)')
        self.limits = limits
        self.mode = mode
        self.kin = kinematics
        self.max_dt = max_dt
        self.max_ik_step = max_ik_step   # rad: a larger IK jump in one tick is a branch flip, refused
        self.measured = None
        self.target = None
        self.takeover = False
        self.lost = False
        self._last_t = None
        self._ee0 = None          # (pos, quat) of the end effector at takeover start (ee_abs)
        self._ik_fail_logged = False
        self._refused = False
        self.estop = False
        self._rearm_needed = False   # e-stop cleared while the takeover was held: release first

    def set_estop(self, flag: bool) -> list:
        """The mux's e-stop state; returns (level, text) messages for the node to log."""
        flag = bool(flag)
        if flag == self.estop:
            return []
        self.estop = flag
        if flag:
            return [('warn', 'e-stop: target frozen, nothing sent')]
        if self.takeover:
            self._rearm_needed = True
            return [('warn', 'e-stop cleared: release the takeover and press it again to drive')]
        return [('info', 'e-stop cleared')]

    def update_joint_state(self, q):
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] == 7 and np.all(np.isfinite(q)):
            self.measured = q

    def _start(self, now):
        self.target = np.clip(self.measured, self.limits.lower, self.limits.upper)
        self._last_t = now
        if self.kin is not None and self.mode == 'ee_abs':
            pos, quat = self.kin.fk(self.target[:6])
            self._ee0 = (np.asarray(pos, dtype=np.float64), quat_normalise(quat))

    def tick(self, now: float, inp: DeviceInput | None, healthy: bool = True, reason: str = '') -> TickResult:
        res = TickResult()
        if not healthy:
            if not self.lost:
                self.lost = True
                if self.takeover:
                    res.messages.append(('error', f'device lost during takeover ({reason}): no more '
                                                  'commands, the mux holds position (not the policy); '
                                                  'replug / unfreeze to resume'))
                else:
                    res.messages.append(('warn', f'device lost ({reason})'))
            return res
        if self.lost:
            self.lost = False
            res.messages.append(('info', 'device back'))
            if self.takeover and inp is not None and inp.takeover and self.measured is not None:
                self._start(now)     # the robot held where it was: continue from there
        if inp is None:
            return res
        for action in inp.events:
            res.events.append(normalise(action))
        res.estop = inp.estop
        if inp.estop:
            res.messages += self.set_estop(True)
        if not inp.takeover:
            self._refused = False
        if self.estop:
            return res                 # no integration, no command; the takeover state is kept
        if self._rearm_needed:
            if inp.takeover:
                return res             # still held since the clear
            self._rearm_needed = False
        if inp.takeover and not self.takeover:
            if self.measured is None:
                if not self._refused:      # once per press, not every tick
                    self._refused = True
                    res.messages.append(('warn', 'takeover refused: no /joint_states yet'))
                return res
            self.takeover = True
            self._start(now)
            res.intervention = True
            res.messages.append(('info', 'human takeover'))
        elif not inp.takeover and self.takeover:
            self.takeover = False
            res.intervention = False
            res.messages.append(('info', 'hand back to the policy'))
            return res
        if not self.takeover:
            return res
        dt = min(max(now - self._last_t if inp.dt is None else inp.dt, 0.0), self.max_dt)
        self._last_t = now
        try:
            self._integrate(inp, dt)
        except Exception as exc:  # noqa: BLE001 - an IK failure keeps the last good target
            if not self._ik_fail_logged:
                res.messages.append(('warn', f'target not reachable, keeping the last one: {exc}'))
                self._ik_fail_logged = True
        else:
            self._ik_fail_logged = False
        res.command = self.target.copy()
        return res

    def _integrate(self, inp: DeviceInput, dt: float):
        lo, hi = self.limits.lower, self.limits.upper
        new = self.target.copy()
        if self.mode == 'joint' and (inp.joint_vel is not None or inp.joint_step is not None):
            if inp.joint_vel is not None:
                new[:6] = new[:6] + np.asarray(inp.joint_vel, dtype=np.float64)[:6] * dt
            if inp.joint_step is not None:
                new[:6] = new[:6] + np.asarray(inp.joint_step, dtype=np.float64)[:6]
        elif self.mode == 'ee' and (inp.twist is not None or inp.ee_step is not None):
            twist = np.zeros(6)
            if inp.twist is not None:
                twist += np.asarray(inp.twist, dtype=np.float64) * dt
            if inp.ee_step is not None:
                twist += np.asarray(inp.ee_step, dtype=np.float64)
            if np.any(twist != 0):
                pos, quat = self.kin.fk(new[:6])
                pos = np.asarray(pos, dtype=np.float64) + twist[:3]
                quat = quat_normalise(quat_mul(quat_from_rotvec(twist[3:]), quat_normalise(quat)))
                new[:6] = self._ik(pos, quat, new[:6])
        elif self.mode == 'ee_abs' and inp.ee_offset is not None:
            dpos, dquat = inp.ee_offset
            pos = self._ee0[0] + np.asarray(dpos, dtype=np.float64)
            quat = quat_normalise(quat_mul(quat_normalise(dquat), self._ee0[1]))
            new[:6] = self._ik(pos, quat, new[:6])
        if inp.gripper_toggle:
            lim = self.limits
            mid = 0.5 * (lim.gripper_open + lim.gripper_closed)
            new[6] = lim.gripper_closed if new[6] > mid else lim.gripper_open
        elif inp.gripper_abs is not None:
            g = float(np.clip(inp.gripper_abs, 0.0, 1.0))
            new[6] = self.limits.gripper_closed + g * (self.limits.gripper_open - self.limits.gripper_closed)
        else:
            if inp.gripper_vel is not None:
                new[6] = new[6] + float(inp.gripper_vel) * dt
            if inp.gripper_step is not None:
                new[6] = new[6] + float(inp.gripper_step)
        new = np.clip(new, lo, hi)
        if not np.all(np.isfinite(new)):
            raise ValueError('non-finite target')
        self.target = new

    def _ik(self, pos, quat, q_init):
        q = self.kin.ik(np.asarray(pos, dtype=np.float64), quat, np.asarray(q_init, dtype=np.float64))
        if q is None:
            raise ValueError('IK found no solution')
        q = np.asarray(q, dtype=np.float64).reshape(-1)[:6]
        if not np.all(np.isfinite(q)):
            raise ValueError('IK returned non-finite joints')
        jump = float(np.max(np.abs(q - np.asarray(q_init, dtype=np.float64)[:6])))
        if jump > self.max_ik_step:
            raise ValueError(f'IK solution jumps {jump:.2f} rad in one step (singularity / branch flip)')
        return q


def load_kinematics():
    """The robot's kinematics from hiors_sim (MJCF); a clear error when it is not installed."""
    return load_arm_kinematics('end-effector teleop')
