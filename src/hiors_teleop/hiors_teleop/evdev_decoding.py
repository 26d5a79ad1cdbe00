"""Linux evdev gamepad decoding (ROS-agnostic): kernel input events (type, code, value) -> the
same (axes, buttons) arrays as sensor_msgs/Joy, so the Joy YAML map (joy_mapping) applies as is.

Axes are scaled from the device's absinfo [min, max] to [-1, 1]; `axis_invert` flips an axis so that
stick up = +1 as in the ROS joy driver (evdev reports up as negative Y). A frame is complete at
EV_SYN/SYN_REPORT; SYN_DROPPED means the kernel buffer overflowed and the state must be re-read.
Default codes: an Xbox-style pad (xpad / hid-generic), ordered like the ros2 joy SDL layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field

EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
SYN_REPORT, SYN_DROPPED = 0, 3
# ABS_X, ABS_Y, ABS_RX, ABS_RY, ABS_Z (LT), ABS_RZ (RT)
DEFAULT_AXIS_CODES = [0, 1, 3, 4, 2, 5]
# A, B, X, Y, back, guide, start, LS, RS, LB, RB (BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST, BTN_SELECT,
# BTN_MODE, BTN_START, BTN_THUMBL, BTN_THUMBR, BTN_TL, BTN_TR)
DEFAULT_BUTTON_CODES = [304, 305, 307, 308, 314, 316, 315, 317, 318, 310, 311]


@dataclass
class EvdevMapConfig:
    axis_codes: list[int] = field(default_factory=lambda: list(DEFAULT_AXIS_CODES),
                                  metadata={'doc': 'evdev ABS code for each Joy axis index (default: ABS_X '
                                                   'ABS_Y ABS_RX ABS_RY ABS_Z ABS_RZ)'})
    axis_invert: list[bool] = field(default_factory=lambda: [False, True, False, True, False, False],
                                    metadata={'doc': 'flip axes (evdev Y is + down; joy is + up)'})
    button_codes: list[int] = field(default_factory=lambda: list(DEFAULT_BUTTON_CODES),
                                    metadata={'doc': 'evdev KEY/BTN code for each Joy button index (default: '
                                                     'an Xbox-style pad in the SDL order, A B X Y back guide '
                                                     'start LS RS LB RB)'})


class EvdevGamepadDecoder:
    def __init__(self, axis_codes=None, button_codes=None, axis_invert=None, absinfo=None):
        """absinfo: {abs_code: (min, max)}; axes without one use the signed 16-bit range."""
        self.axis_codes = list(DEFAULT_AXIS_CODES if axis_codes is None else axis_codes)
        self.button_codes = list(DEFAULT_BUTTON_CODES if button_codes is None else button_codes)
        inv = [False] * len(self.axis_codes) if axis_invert is None else list(axis_invert)
        if len(inv) != len(self.axis_codes):
            raise ValueError('axis_invert needs one value per axis code')
        self.invert = inv
        self.absinfo = dict(absinfo or {})
        self._axis_index = {c: i for i, c in enumerate(self.axis_codes)}
        self._button_index = {c: i for i, c in enumerate(self.button_codes)}
        self.axes = [0.0] * len(self.axis_codes)
        self.buttons = [0] * len(self.button_codes)
        self.frames = 0
        self.needs_resync = False

    def normalise(self, code: int, value: int) -> float:
        lo, hi = self.absinfo.get(code, (-32768, 32767))
        if hi <= lo:
            return 0.0
        v = 2.0 * (value - lo) / (hi - lo) - 1.0
        v = max(-1.0, min(1.0, v))
        return -v if self.invert[self._axis_index[code]] else v

    def set_state(self, abs_values: dict, pressed_keys) -> None:
        """Re-read state (after open or SYN_DROPPED): {abs code: value}, iterable of pressed codes."""
        for code, value in abs_values.items():
            if code in self._axis_index:
                self.axes[self._axis_index[code]] = self.normalise(code, value)
        pressed = set(pressed_keys)
        self.buttons = [1 if c in pressed else 0 for c in self.button_codes]
        self.needs_resync = False

    def feed(self, etype: int, code: int, value: int):
        """One kernel event. Returns (axes, buttons) copies when a frame completes, else None."""
        if etype == EV_ABS:
            i = self._axis_index.get(code)
            if i is not None:
                self.axes[i] = self.normalise(code, value)
        elif etype == EV_KEY:
            i = self._button_index.get(code)
            if i is not None:
                self.buttons[i] = 1 if value else 0      # 2 = auto-repeat: still pressed
        elif etype == EV_SYN:
            if code == SYN_DROPPED:
                self.needs_resync = True
                return None
            if code == SYN_REPORT and not self.needs_resync:
                self.frames += 1
                return list(self.axes), list(self.buttons)
        return None
