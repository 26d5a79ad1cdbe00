"""Shared ROS adapter for every teleop device node: joint_states in; teleop command, intervention
and episode events out. A device subclass only implements `poll(now)` returning
(DeviceInput | None, healthy, reason); the decisions are in teleop_core.TeleopCore."""
import select
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray

from hiors_common.diagnostics import DiagnosticsPublisher
from hiors_common.robot import GRIPPER_CLOSED, GRIPPER_OPEN
from hiors_common.topics import (EPISODE_EVENT, ESTOP, INTERVENTION, JOINT_STATES, SIM_RESET_SERVICE, TELEOP_COMMAND,
                                 TELEOP_STALE, latched_qos, reliable_qos)

from .mux import JOINT_NAMES, POSITION_LOWER, POSITION_UPPER
from .ros_episode import EpisodeControl
from .teleop_core import TeleopCore, TeleopLimits, load_kinematics


@dataclass
class TeleopNodeConfig:
    mode: str = field(default='joint', metadata={'doc': "'joint' (joint velocities) or 'ee' (end-effector "
                                                        "twist via the robot's FK/IK)"})
    rate_hz: float = field(default=50.0, metadata={'doc': 'command rate while taking over'})
    device_timeout_s: float = field(default=0.5, metadata={
        'doc': 'a streaming device silent this long counts as frozen (0 = never)'})
    joint_names: list[str] = field(default_factory=lambda: list(JOINT_NAMES), metadata={
        'doc': 'command vector order; joint_states are read by name (default: the robot description, '
               'hiors_common.robot; set these and the limits for another arm)'})
    position_lower: list[float] = field(default_factory=lambda: list(POSITION_LOWER), metadata={
        'doc': 'per joint: targets are clipped to at least this (rad, gripper m per finger)'})
    position_upper: list[float] = field(default_factory=lambda: list(POSITION_UPPER), metadata={
        'doc': 'per joint: targets are clipped to at most this (rad, gripper m per finger)'})
    gripper_open: float = field(default=GRIPPER_OPEN, metadata={'doc': 'opening per finger when open'})
    gripper_closed: float = field(default=GRIPPER_CLOSED, metadata={'doc': 'opening per finger when closed (m)'})
    command_topic: str = field(default=TELEOP_COMMAND, metadata={
        'doc': 'std_msgs/Float64MultiArray out: the joint targets while taking over (default from '
               'hiors_common.topics)'})
    intervention_topic: str = field(default=INTERVENTION, metadata={
        'doc': 'std_msgs/Bool out, latched: true while this device has control (default from '
               'hiors_common.topics)'})
    estop_topic: str = field(default=ESTOP, metadata={
        'doc': 'e-stop requests go out here, and the state is read back (frozen target, re-arm by a new press)'})
    stale_topic: str = field(default=TELEOP_STALE, metadata={
        'doc': 'Bool: true as soon as the device counts as lost / frozen (the mux holds at once)'})
    event_topic: str = field(default=EPISODE_EVENT, metadata={
        'doc': "std_msgs/String out: episode events from the device's buttons / keys, where it has them "
               "(start | success | failure | abort; default from hiors_common.topics)"})
    joint_states_topic: str = field(default=JOINT_STATES, metadata={
        'doc': 'sensor_msgs/JointState in: the measured position a takeover starts from (default from '
               'hiors_common.topics)'})
    reset_service: str = field(default=SIM_RESET_SERVICE, metadata={'doc': "std_srvs/Trigger for reset ('' = none)"})
    intervention_heartbeat_s: float = field(default=1.0, metadata={
        'doc': 'while taking over, re-send intervention=true this often (a restarted mux learns it)'})


class DeviceTeleopNode(Node):
    device_name = 'device'

    def __init__(self, node_name: str, config_cls, core_mode: str | None = None):
        super().__init__(node_name)
        from hiors_common.params import declare_config
        self.cfg = declare_config(self, config_cls)
        mode = core_mode or self.cfg.mode
        kin = load_kinematics() if mode != 'joint' else None
        limits = TeleopLimits(np.asarray(self.cfg.position_lower, dtype=np.float64),
                              np.asarray(self.cfg.position_upper, dtype=np.float64),
                              self.cfg.gripper_open, self.cfg.gripper_closed)
        self.core = TeleopCore(limits, mode, kin, max_dt=max(0.1, 2.0 / self.cfg.rate_hz))
        rel = reliable_qos(10)
        # Intervention is published latched (a late subscriber asking for it gets the last value);
        # its subscribers stay volatile, which matches both latched and plain publishers.
        self.cmd_pub = self.create_publisher(Float64MultiArray, self.cfg.command_topic, rel)
        self.int_pub = self.create_publisher(Bool, self.cfg.intervention_topic, latched_qos())
        self.estop_pub = self.create_publisher(Bool, self.cfg.estop_topic, rel)
        self.stale_pub = self.create_publisher(Bool, self.cfg.stale_topic, rel)
        self._stale_sent = None
        self.create_subscription(Bool, self.cfg.estop_topic, self._on_estop, rel)
        self.episode = EpisodeControl(self, self.cfg.event_topic, self.cfg.reset_service)
        self.diag = DiagnosticsPublisher(self, f'hiors_teleop_{self.device_name}')
        self.create_subscription(JointState, self.cfg.joint_states_topic, self._on_joint_state, 10)
        self._last_int_pub = 0.0
        self.healthy = False
        self.health_reason = 'not started'
        # The timer and the waker thread (input arriving between ticks) both run _tick: serialised.
        self._lock = threading.RLock()
        self._stop_waker = threading.Event()
        self._waker = None
        self.create_timer(1.0 / self.cfg.rate_hz, self._locked_tick)
        self.create_timer(1.0, self._diagnostics)

    def start_waker(self):
        """React to input as soon as `wait_handle()` signals it, not only at rate_hz (lower takeover
        latency). Call at the end of a device's __init__."""
        self._waker = threading.Thread(target=self._wake_loop, name=f'{self.device_name}-waker', daemon=True)
        self._waker.start()

    def wait_handle(self):
        """A file descriptor that turns readable, or a threading.Event that is set, when the device
        has new input; None when there is nothing to wait on (the rate_hz timer still polls)."""
        return None

    def _wake_loop(self):
        while not self._stop_waker.is_set():
            handle = self.wait_handle()
            if handle is None:
                self._stop_waker.wait(0.05)
                continue
            if isinstance(handle, threading.Event):
                ready = handle.wait(0.05)
                handle.clear()
            else:
                try:
                    ready = bool(select.select([handle], [], [], 0.05)[0])
                except (OSError, ValueError):      # the device was closed under us
                    self._stop_waker.wait(0.01)
                    continue
            if ready and not self._stop_waker.is_set():
                self._locked_tick()
                time.sleep(0.001)   # never a busy loop, even if a handle stays ready

    def stop_waker(self):
        self._stop_waker.set()
        if self._waker is not None:
            self._waker.join(1.0)

    def _locked_tick(self):
        with self._lock:
            self._tick()

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def _on_joint_state(self, msg):
        pos = dict(zip(msg.name, msg.position))
        try:
            self.core.update_joint_state([pos[n] for n in self.cfg.joint_names])
        except KeyError:
            pass

    def _on_estop(self, msg):
        with self._lock:
            self._log(self.core.set_estop(msg.data))

    def _log(self, messages):
        log = self.get_logger()
        for level, text in messages:
            if level == 'error':
                log.error(f'{self.device_name}: {text}')
            elif level == 'warn':
                log.warning(f'{self.device_name}: {text}')
            else:
                log.info(f'{self.device_name}: {text}')

    def poll(self, now):   # pragma: no cover - implemented by each device
        raise NotImplementedError

    def _tick(self):
        now = self.now()
        try:
            inp, healthy, reason = self.poll(now)
        except Exception as exc:  # noqa: BLE001 - a device error is a lost device, not a crash
            inp, healthy, reason = None, False, f'{type(exc).__name__}: {exc}'
        self.healthy, self.health_reason = healthy, reason
        self.apply(now, inp, healthy, reason)

    def apply(self, now, inp, healthy=True, reason=''):
        """Run one decoded sample through the core and publish what it produced."""
        res = self.core.tick(now, inp, healthy, reason)
        log = self.get_logger()
        self._log(res.messages)
        # Only the device holding the takeover speaks for it (another, idle device may be unplugged).
        stale = not healthy and self.core.takeover
        if stale != self._stale_sent:          # on every change, before anything else
            self._stale_sent = stale
            self.stale_pub.publish(Bool(data=stale))
        if res.estop is not None:
            self.estop_pub.publish(Bool(data=bool(res.estop)))
            if res.estop:
                log.warning(f'{self.device_name}: E-STOP requested')
            else:
                log.info(f'{self.device_name}: e-stop clear requested')
        # Order matters for the mux: the takeover flag goes first, then the first target.
        if res.intervention is not None:
            self.int_pub.publish(Bool(data=res.intervention))
            self._last_int_pub = now
        elif self.core.takeover and now - self._last_int_pub >= self.cfg.intervention_heartbeat_s:
            self.int_pub.publish(Bool(data=True))
            self._last_int_pub = now
        if res.command is not None:
            self.cmd_pub.publish(Float64MultiArray(data=[float(x) for x in res.command]))
        for action in res.events:
            self.episode.send(action)

    def _diagnostics(self):
        level = 0 if self.healthy else (2 if self.core.takeover else 1)
        self.diag.publish(level, f'{self.device_name}: ' + ('ok' if self.healthy else self.health_reason),
                          {'takeover': self.core.takeover, 'mode': self.core.mode})
