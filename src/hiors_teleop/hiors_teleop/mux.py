"""ROS-agnostic command mux: picks which source drives the robot and makes what it sends safe.

Priority: e-stop (hold) > human (while /hiors/intervention is true) > policy. After an e-stop clears
nothing moves until the operator re-arms: a new takeover press (the device restarts its target from
the measured position) or an explicit resume; commands sent before the re-arm never count. A source whose last
command is older than the watchdog timeout is "silent"; the mux never falls through to a lower
priority source when the selected one goes silent, it holds position instead (a frozen or
unplugged device mid-takeover must not hand the robot back to the policy).

Every output is: position-limited (clipped, and commands far outside the limits are dropped),
velocity-limited against the previous output, and blended over `blend_time_s` when the policy
gets the robot (hand-back, start) so it never jumps; a takeover gives the human the robot at once
(`takeover_blend_s` 0; the velocity limit still bounds the step). Hold = the measured joint position at the moment
hold began (commanding where the robot is cannot make it jump).

Times are plain floats in seconds (monotonic); the node passes its clock in.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from hiors_common.robot import JOINT_NAMES, POSITION_LOWER, POSITION_UPPER
from hiors_common import topics   # as a module: TELEOP_STALE here is a hold reason, not the topic

POLICY, HUMAN, HOLD = 'policy', 'human', 'hold'
SOURCES = (POLICY, HUMAN)


def _doc(text):
    return {'doc': text}


@dataclass
class MuxConfig:
    """Parameters of the command mux node (one flat dataclass: declared once as ROS parameters)."""
    joint_names: list[str] = field(default_factory=lambda: list(JOINT_NAMES),
                                   metadata=_doc('command vector order; /joint_states is mapped by name. '
                                                 'Default and the limits: the robot description '
                                                 '(hiors_common.robot, the hiors_sim arm); set them for '
                                                 'another arm'))
    rate_hz: float = field(default=10.0, metadata=_doc(
        'minimum output rate: holds/blends/heartbeats are published at this rate; commands of the '
        'active source are forwarded as they arrive'))
    publish_on_command: bool = field(default=True, metadata=_doc(
        'forward each accepted command of the active source at once (lowest latency)'))
    watchdog_timeout_s: float = field(default=0.5, metadata=_doc(
        'a source silent for longer than this is not followed; the robot holds'))
    blend_time_s: float = field(default=0.5, metadata=_doc(
        'blend to the policy (hand-back, start): from the last command sent, no jump'))
    takeover_blend_s: float = field(default=0.0, metadata=_doc(
        'blend to the human at a takeover. 0: the human has the robot at once (the velocity limit '
        'still bounds every step); a blend would keep carrying the arm where the policy was sending '
        'it, under the human label (the learning benchmark lost 18 points of policy-alone success '
        'with 0.5 s, BENCHMARKS.md)'))
    position_lower: list[float] = field(default_factory=lambda: list(POSITION_LOWER),
                                        metadata=_doc('joint position lower limits (rad, gripper m)'))
    position_upper: list[float] = field(default_factory=lambda: list(POSITION_UPPER),
                                        metadata=_doc('joint position upper limits'))
    velocity_limit: list[float] = field(default_factory=lambda: [1.5, 1.5, 1.5, 2.0, 2.0, 2.0, 0.2],
                                        metadata=_doc('max |change of command| per second, per joint (for '
                                                      'the hiors_sim arm; a real arm sets its own)'))
    range_tolerance: float = field(default=0.05, metadata=_doc(
        'commands up to this far outside the position limits are clipped; further out are dropped'))
    resync_jump: float = field(default=0.5, metadata=_doc(
        'a joint_states jump larger than this (rad/m, any joint) means the robot was reset or '
        'teleported: the velocity limiter and hold restart from the measured position'))
    joint_state_timeout_s: float = field(default=1.0, metadata=_doc(
        'joint_states older than this are not used for the hold position'))
    require_joint_state: bool = field(default=True, metadata=_doc(
        'send nothing until the robot position is known (the first command is limited from it)'))
    # Topics / services (all remappable anyway; names here so a YAML can change them). Each
    # default comes from hiors_common.topics.
    policy_topic: str = field(default=topics.POLICY_COMMAND, metadata=_doc(
        "std_msgs/Float64MultiArray in: the policy's joint targets"))
    teleop_topic: str = field(default=topics.TELEOP_COMMAND, metadata=_doc(
        "std_msgs/Float64MultiArray in: the human's joint targets (teleop devices, simulated human)"))
    intervention_topic: str = field(default=topics.INTERVENTION, metadata=_doc(
        'std_msgs/Bool in: true while a human has control (the teleop source is followed)'))
    estop_topic: str = field(default=topics.ESTOP, metadata=_doc(
        'std_msgs/Bool in and out: true = e-stop, hold; estop_service calls are re-published here'))
    estop_service: str = field(default=topics.SET_ESTOP_SERVICE, metadata=_doc(
        'std_srvs/SetBool offered: true engages the e-stop, false clears it (re-arm with resume_service)'))
    resume_service: str = field(default=topics.RESUME_SERVICE, metadata=_doc(
        'std_srvs/Trigger: re-arm after an e-stop was cleared (the policy may drive again)'))
    teleop_stale_topic: str = field(default=topics.TELEOP_STALE, metadata=_doc(
        "std_msgs/Bool from the teleop device: true = its input stopped (hold at once, not after "
        "the watchdog)"))
    command_topic: str = field(default=topics.ROBOT_COMMAND, metadata=_doc(
        'std_msgs/Float64MultiArray out: the robot command (ros2_control forward_position_controller)'))
    executed_topic: str = field(default=topics.EXECUTED_ACTION, metadata=_doc(
        'sensor_msgs/JointState out: each command sent, header.frame_id = policy | human | hold (recorded)'))
    joint_states_topic: str = field(default=topics.JOINT_STATES, metadata=_doc(
        'sensor_msgs/JointState in: the measured position (hold, limiter start), read by joint name'))
    status_topic: str = field(default=topics.MUX_STATUS, metadata=_doc(
        "std_msgs/String JSON out: the mux's state, on every mode change and every diagnostics_period_s"))
    episode_event_topic: str = field(default=topics.EPISODE_EVENT, metadata=_doc(
        "std_msgs/String in and out: episode events; 'start' resyncs the limiter, the episode services "
        'publish here'))
    episode_services: bool = field(default=True, metadata=_doc(
        f'offer the episode services ({topics.EPISODE_SERVICE_PREFIX}/{{start,success,failure,abort,reset}})'))
    reset_service: str = field(default=topics.SIM_RESET_SERVICE, metadata=_doc(
        "std_srvs/Trigger the robot offers for reset ('' = none)"))
    diagnostics_period_s: float = field(default=1.0, metadata=_doc(
        'seconds between /diagnostics reports (each also re-publishes the status)'))

    def validate(self):
        n = len(self.joint_names)
        for name in ('position_lower', 'position_upper', 'velocity_limit'):
            if len(getattr(self, name)) != n:
                raise ValueError(f'{name} has {len(getattr(self, name))} values, joint_names has {n}')
        lo, hi, vel = (np.asarray(self.position_lower), np.asarray(self.position_upper),
                       np.asarray(self.velocity_limit))
        if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or np.any(lo > hi):
            raise ValueError(f'position limits invalid: lower={self.position_lower} upper={self.position_upper}')
        if not np.all(np.isfinite(vel)) or np.any(vel <= 0):
            raise ValueError(f'velocity_limit must be finite and > 0: {self.velocity_limit}')
        if self.rate_hz <= 0 or self.watchdog_timeout_s <= 0 or self.blend_time_s < 0 or self.takeover_blend_s < 0:
            raise ValueError('rate_hz and watchdog_timeout_s must be > 0, blend_time_s and takeover_blend_s >= 0')
        return self


@dataclass
class Output:
    command: np.ndarray
    source: str          # 'policy' | 'human' | 'hold'
    reason: str = ''     # why hold (empty otherwise)


# Hold reasons that are a normal part of a switch (info, not warnings).
NO_POLICY_YET = 'no policy command yet'
TAKEOVER_WAIT = 'takeover: waiting for the first teleop command'
HANDBACK_WAIT = "hand-back: waiting for the policy's first command"
WAITING = (NO_POLICY_YET, TAKEOVER_WAIT, HANDBACK_WAIT)
# Safety holds (warnings): the operator has to act.
REARM_HOW = 'press the takeover again, or call the resume service'
REARM_WAIT = f'e-stop cleared: not re-armed ({REARM_HOW})'
TELEOP_STALE = 'teleop device reports its input stale during takeover: holding, NOT returning to the policy'


class CommandMux:
    def __init__(self, cfg: MuxConfig):
        self.cfg = cfg.validate()
        self.n = len(cfg.joint_names)
        self.lower = np.asarray(cfg.position_lower, dtype=np.float64)
        self.upper = np.asarray(cfg.position_upper, dtype=np.float64)
        self.vel = np.asarray(cfg.velocity_limit, dtype=np.float64)
        self.max_dt = 1.0 / cfg.rate_hz
        self._cmd = {s: None for s in SOURCES}       # latest accepted command per source
        self._cmd_t = {s: -math.inf for s in SOURCES}
        self.intervention = False
        self._flip_t = -math.inf      # when the intervention flag last changed
        self.estop = False
        self.armed = True             # False from an e-stop clear until the operator re-arms
        self._armed_t = -math.inf     # commands older than the last re-arm never count
        self.teleop_stale = False
        self.measured = None
        self.measured_t = -math.inf
        self.last_sent = None
        self.last_sent_t = -math.inf
        self.mode = None              # mode of the last output
        self.reason = ''
        self._blend_start = None
        self._blend_t0 = -math.inf
        self._hold_target = None
        self.dropped = {}             # (source, reason) -> count
        self.sent = {POLICY: 0, HUMAN: 0, HOLD: 0}
        self.events: list[tuple[str, str]] = []   # (level, message) for the node to log; drained by it

    # ---- inputs -------------------------------------------------------------------------------
    def check(self, cmd) -> tuple[np.ndarray | None, str]:
        """Validate a command: returns (clipped command, '') or (None, reason to drop)."""
        try:
            a = np.asarray(cmd, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            return None, 'not numeric'
        if a.shape[0] != self.n:
            return None, f'wrong length {a.shape[0]} (expected {self.n})'
        if not np.all(np.isfinite(a)):
            return None, 'NaN/inf'
        tol = self.cfg.range_tolerance
        bad = np.nonzero((a < self.lower - tol) | (a > self.upper + tol))[0]
        if bad.size:
            j = int(bad[0])
            return None, (f'out of range: {self.cfg.joint_names[j]}={a[j]:.4f} outside '
                          f'[{self.lower[j]:.4f}, {self.upper[j]:.4f}]')
        return np.clip(a, self.lower, self.upper), ''

    def submit(self, source: str, cmd, now: float) -> tuple[bool, str]:
        """A command from `source`; returns (accepted, reason if dropped)."""
        assert source in SOURCES, source
        clipped, reason = self.check(cmd)
        if clipped is None:
            key = (source, reason.split(':')[0])
            self.dropped[key] = self.dropped.get(key, 0) + 1
            return False, reason
        self._cmd[source] = clipped
        self._cmd_t[source] = now
        return True, ''

    def set_intervention(self, flag: bool, now: float):
        if bool(flag) != self.intervention:
            self._flip_t = now
            if flag:
                self.teleop_stale = False   # a new takeover: a live device is pressing
            if flag and not self.estop and not self.armed:
                self.rearm(now, 'takeover pressed')
        self.intervention = bool(flag)

    def set_estop(self, flag: bool, now: float):
        if bool(flag) and not self.estop:
            self.events.append(('warn', 'E-STOP engaged: holding position'))
        elif not flag and self.estop:
            self.armed = False
            self.events.append(('warn', f'e-stop cleared: holding until re-armed ({REARM_HOW})'))
        self.estop = bool(flag)

    def rearm(self, now: float, why: str = 'resume') -> tuple[bool, str]:
        """Let sources drive again after an e-stop was cleared; refused while it is engaged."""
        if self.estop:
            return False, 'e-stop still engaged: clear it first'
        if not self.armed:
            self.armed, self._armed_t = True, now
            self.events.append(('info', f're-armed ({why})'))
            return True, f're-armed ({why})'
        return True, 'already armed'

    def set_teleop_stale(self, flag: bool, now: float):
        self.teleop_stale = bool(flag)

    def update_joint_state(self, q, now: float):
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] != self.n or not np.all(np.isfinite(q)):
            return
        if self.measured is not None and np.max(np.abs(q - self.measured)) > self.cfg.resync_jump:
            self.events.append(('info', 'joint_states jumped (robot reset?): limiter and hold '
                                        'restart from the measured position'))
            self.measured, self.measured_t = q, now
            self.resync(now)
            return
        self.measured, self.measured_t = q, now

    def resync(self, now: float):
        """Restart the limiter, the blend and the hold target from the measured position (after a
        robot reset / episode start)."""
        if self.measured is None:
            return
        q = np.clip(self.measured, self.lower, self.upper)
        self.last_sent = q.copy()
        if self.mode == HOLD:
            self._hold_target = q.copy()
        self._blend_start = q.copy()

    # ---- selection ----------------------------------------------------------------------------
    def fresh(self, source: str, now: float) -> bool:
        if self._cmd[source] is None or now - self._cmd_t[source] > self.cfg.watchdog_timeout_s \
                or self._cmd_t[source] < self._armed_t:
            return False
        # The policy is silent while a human has control: after a hand-back only what it sent
        # since counts (a pre-takeover command may still be within the watchdog, and following
        # it would steer the arm back to where it was before the human moved it).
        return source != POLICY or self._cmd_t[POLICY] >= self._flip_t

    def _awaiting_first(self, source: str, now: float) -> bool:
        """Just switched to `source` (or re-armed) and nothing from it since: waiting, not (yet) silent."""
        since = max(self._flip_t, self._armed_t)
        return self._cmd_t[source] < since and now - since <= self.cfg.watchdog_timeout_s

    def desired(self, now: float) -> tuple[str, str]:
        """(mode, reason) the mux wants now."""
        if self.estop:
            return HOLD, 'e-stop'
        if not self.armed:
            return HOLD, REARM_WAIT
        if self.intervention:
            if self.teleop_stale:
                return HOLD, TELEOP_STALE
            if self.fresh(HUMAN, now):
                return HUMAN, ''
            if self._cmd[HUMAN] is None or self._awaiting_first(HUMAN, now):
                return HOLD, TAKEOVER_WAIT
            return HOLD, (f'teleop device silent > {self.cfg.watchdog_timeout_s:g} s during takeover '
                          '(unplugged or frozen?): holding, NOT returning to the policy')
        if self.fresh(POLICY, now):
            return POLICY, ''
        if self._cmd[POLICY] is None:
            return HOLD, NO_POLICY_YET
        if self._awaiting_first(POLICY, now):
            return HOLD, HANDBACK_WAIT
        return HOLD, f'policy silent > {self.cfg.watchdog_timeout_s:g} s: holding'

    def active_source(self, now: float) -> str:
        return self.desired(now)[0]

    def _reference(self):
        if self.last_sent is not None:
            return self.last_sent
        if self.measured is not None:
            return np.clip(self.measured, self.lower, self.upper)
        return None

    def step(self, now: float) -> Output | None:
        """The command to send now (None when the robot position is unknown and nothing was sent)."""
        mode, reason = self.desired(now)
        ref = self._reference()
        if ref is None and (self.cfg.require_joint_state or mode == HOLD):
            return None
        if mode != self.mode or (mode == HOLD and reason != self.reason):
            if mode != self.mode:
                self._switch(mode, reason, ref, now)
            self.reason = reason
            level = 'warn' if mode == HOLD and reason not in WAITING else 'info'
            self.events.append((level, f'source -> {mode}' + (f' ({reason})' if reason else '')))
        if mode == HOLD:
            target = self._hold_target
            if target is None:
                return None
            out = target.copy()   # commanding the measured position cannot jump: no limiter here
        else:
            target = self._cmd[mode]
            blend = self.cfg.takeover_blend_s if mode == HUMAN else self.cfg.blend_time_s
            if self._blend_start is not None and blend > 0:
                alpha = min(1.0, (now - self._blend_t0) / blend)
                target = self._blend_start + alpha * (target - self._blend_start)
            out = np.clip(target, self.lower, self.upper)
            if ref is not None:
                dt = min(max(now - self.last_sent_t, 1e-3), self.max_dt) if self.last_sent is not None \
                    else self.max_dt
                step = self.vel * dt
                out = ref + np.clip(out - ref, -step, step)
        self.last_sent = out
        self.last_sent_t = now
        self.sent[mode] += 1
        return Output(out.copy(), mode, reason if mode == HOLD else '')

    def _switch(self, mode: str, reason: str, ref, now: float):
        self.mode = mode
        self._blend_start = None if ref is None else ref.copy()
        self._blend_t0 = now
        if mode == HOLD:
            if self.measured is not None and now - self.measured_t <= self.cfg.joint_state_timeout_s:
                self._hold_target = np.clip(self.measured, self.lower, self.upper)
            else:
                self._hold_target = None if ref is None else ref.copy()

    def status(self, now: float) -> dict:
        mode, reason = self.desired(now)
        return {
            'source': mode, 'reason': reason, 'estop': self.estop, 'armed': self.armed,
            'intervention': self.intervention, 'teleop_stale': self.teleop_stale,
            'policy_fresh': self.fresh(POLICY, now), 'human_fresh': self.fresh(HUMAN, now),
            'joint_state_age_s': (None if self.measured is None else round(now - self.measured_t, 3)),
            'sent': dict(self.sent),
            'dropped': {f'{s}:{r}': c for (s, r), c in sorted(self.dropped.items())},
        }

    def drain_events(self) -> list[tuple[str, str]]:
        ev, self.events = self.events, []
        return ev


def config_from_dict(d: dict) -> MuxConfig:
    names = {f.name for f in dataclasses.fields(MuxConfig)}
    unknown = set(d) - names
    if unknown:
        raise KeyError(f'unknown mux parameters: {sorted(unknown)}')
    return MuxConfig(**d)
