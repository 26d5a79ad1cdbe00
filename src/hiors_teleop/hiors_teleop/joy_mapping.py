"""Gamepad mapping (ROS-agnostic): (axes, buttons) as in sensor_msgs/Joy -> DeviceInput.

Used by the Joy node (ROS `joy` driver output) and by the evdev reader (which first turns kernel
input events into the same axes/buttons arrays), so both share one YAML map.

Defaults follow the ros2 `joy` node's SDL game-controller layout (Xbox-style pad):
axes 0 LX, 1 LY, 2 RX, 3 RY, 4 LT, 5 RT;  buttons 0 A, 1 B, 2 X, 3 Y, 4 back, 5 guide, 6 start,
7 LS, 8 RS, 9 LB, 10 RB.
  LB (hold) = deadman / takeover        A = success     B = failure     X = abort
  start = start episode                  back = reset    RB (hold) = open gripper   Y (hold) = close
  sticks: joint mode -> joints 1..6 velocity; ee mode -> vx vy vz wx wy wz
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .teleop_core import DeviceInput


@dataclass
class JoyMapConfig:
    # Button / axis indices are the Joy ones, in the SDL game-controller layout (module doc).
    deadman_button: int = field(default=9, metadata={
        'doc': 'LB: hold for takeover (or toggle, see takeover_toggle)'})
    takeover_toggle: bool = field(default=False, metadata={'doc': 'press once to take over, again to hand back'})
    success_button: int = field(default=0, metadata={'doc': 'A: label the episode a success; -1 = none'})
    failure_button: int = field(default=1, metadata={'doc': 'B: label the episode a failure; -1 = none'})
    abort_button: int = field(default=2, metadata={'doc': 'X: abort the episode; -1 = none'})
    start_button: int = field(default=6, metadata={'doc': 'start: start an episode; -1 = none'})
    reset_button: int = field(default=4, metadata={'doc': 'back: reset the robot / scene; -1 = none'})
    estop_button: int = field(default=5, metadata={'doc': 'press engages the mux e-stop (guide); -1 = none. '
                                                          'Clear it with the keyboard (P) or /hiors/set_estop'})
    gripper_open_button: int = field(default=10, metadata={'doc': 'RB: hold to open the gripper'})
    gripper_close_button: int = field(default=3, metadata={'doc': 'Y: hold to close the gripper'})
    axis_map: list[int] = field(default_factory=lambda: [1, 0, 3, 2, -1, -1], metadata={
        'doc': 'axis index for each of the 6 motion dims (joint1..6 in joint mode, vx vy vz wx wy wz in '
               'ee mode); -1 = none. Defaults: LY LX RY RX -> the first 4 dims'})
    axis_scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], metadata={
        'doc': 'sign / scale per motion dim (applied before the speed)'})
    axis_offset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], metadata={
        'doc': 'rest value per motion dim (triggers rest at 1.0 in the SDL layout: to use one, set its '
               'offset to 1.0)'})
    deadzone: float = field(default=0.1, metadata={'doc': 'axis values below this count as 0 (after offset '
                                                          'and scale)'})
    joint_speed: float = field(default=0.5, metadata={'doc': 'rad/s at full deflection (joint mode)'})
    linear_speed: float = field(default=0.1, metadata={'doc': 'm/s at full deflection (ee mode)'})
    angular_speed: float = field(default=0.5, metadata={'doc': 'rad/s at full deflection (ee mode)'})
    gripper_speed: float = field(default=0.04, metadata={'doc': 'm/s per finger while a gripper button is held'})


def _button(buttons, index) -> bool:
    return 0 <= index < len(buttons) and bool(buttons[index])


class JoyMapper:
    def __init__(self, cfg):
        self.cfg = cfg
        if len(cfg.axis_map) != 6 or len(cfg.axis_scale) != 6 or len(cfg.axis_offset) != 6:
            raise ValueError('axis_map, axis_scale and axis_offset need 6 values each')
        self._prev = {}
        self._toggle_state = False

    def _edge(self, name, pressed) -> bool:
        was = self._prev.get(name, False)
        self._prev[name] = pressed
        return pressed and not was

    def motion(self, axes) -> np.ndarray:
        """6 motion dims in [-1, 1] after the map, offsets, scale and deadzone."""
        c = self.cfg
        out = np.zeros(6)
        for k, idx in enumerate(c.axis_map):
            if 0 <= idx < len(axes):
                v = (float(axes[idx]) - c.axis_offset[k]) * c.axis_scale[k]
                if abs(v) < c.deadzone:
                    v = 0.0
                else:   # rescale so motion starts from 0 at the deadzone edge
                    v = np.sign(v) * (abs(v) - c.deadzone) / (1.0 - c.deadzone)
                out[k] = float(np.clip(v, -1.0, 1.0))
        return out

    def map(self, axes, buttons, mode: str = 'joint') -> DeviceInput:
        c = self.cfg
        deadman = _button(buttons, c.deadman_button)
        if c.takeover_toggle:
            if self._edge('deadman', deadman):
                self._toggle_state = not self._toggle_state
            takeover = self._toggle_state
        else:
            takeover = deadman
        events = []
        for action, idx in (('start', c.start_button), ('success', c.success_button),
                            ('failure', c.failure_button), ('abort', c.abort_button),
                            ('reset', c.reset_button)):
            if self._edge(action, _button(buttons, idx)):
                events.append(action)
        m = self.motion(axes)
        inp = DeviceInput(takeover=takeover, events=events,
                          estop=True if self._edge('estop', _button(buttons, c.estop_button)) else None)
        if mode == 'joint':
            inp.joint_vel = m * c.joint_speed
        else:
            inp.twist = np.concatenate([m[:3] * c.linear_speed, m[3:] * c.angular_speed])
        g = float(_button(buttons, c.gripper_open_button)) - float(_button(buttons, c.gripper_close_button))
        inp.gripper_vel = g * c.gripper_speed
        return inp
