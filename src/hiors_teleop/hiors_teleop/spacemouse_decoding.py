"""3Dconnexion SpaceMouse HID report decoding (ROS-agnostic).

Report format implemented (USB HID input reports, numbered; all axes little-endian int16):
  id 1, 7 bytes : 01 | tx | ty | tz                  translation (SpaceNavigator, SpaceMouse Compact, ...)
  id 1, 13 bytes: 01 | tx | ty | tz | rx | ry | rz   all six axes (SpaceMouse Wireless / Pro Wireless)
  id 2, 7 bytes : 02 | rx | ry | rz                  rotation
  id 3, n bytes : 03 | button bitmask (little-endian, bit 0 = left / button 1, bit 1 = right / 2)
Raw axes are about +-350 at full deflection (`full_scale`). Device frame as reported: tx right,
ty towards the user, tz down; rx/ry/rz rotations about those axes. hidraw delivers one report per
read; a byte stream (replay, FIFO) is split by the lengths above.

`SpaceMouseMapper` turns the 6 axes into a base-frame twist (ee mode) or joint velocities (joint
mode) with an axis map + signs, and implements takeover: motion above `motion_threshold` starts a
takeover that ends after `auto_release_s` without motion; the takeover button makes it sticky
(press again to hand back).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from .teleop_core import DeviceInput

VENDOR_IDS = (0x046D, 0x256F)       # Logitech-era and 3Dconnexion USB vendor ids
SIX_AXIS_PRODUCTS = (0xC62E, 0xC62F, 0xC631, 0xC632, 0xC635, 0xC638, 0xC652)  # wireless / pro / universal receiver


class SpaceMouseDecoder:
    def __init__(self, button_report_len: int = 3):
        self.axes = np.zeros(6)          # raw tx ty tz rx ry rz
        self.buttons = 0
        self.button_report_len = button_report_len
        self.reports = 0
        self.bad = 0

    def split(self, buf: bytes) -> list[bytes]:
        """One hidraw read is one report; a byte stream (replay, FIFO) is cut by the lengths above
        (a six-axis report 1 can only be recognised when it arrives alone)."""
        buf = bytes(buf)
        lengths = {1: 7, 2: 7, 3: self.button_report_len}
        if buf and (len(buf) == lengths.get(buf[0]) or (buf[0] == 1 and len(buf) == 13)):
            return [buf]
        out, i = [], 0
        while i < len(buf):
            n = lengths.get(buf[i])
            if n is None:
                self.bad += 1
                break
            if i + n > len(buf):
                if buf[i] != 3:       # a short button report may end a read; short axes may not
                    self.bad += 1
                    break
                n = len(buf) - i
            out.append(buf[i:i + n])
            i += n
        return out

    def feed(self, report: bytes) -> bool:
        """Decode one report; returns True when it was understood."""
        if len(report) < 2:
            self.bad += 1
            return False
        rid = report[0]
        if rid == 1 and len(report) >= 13:
            self.axes[:] = struct.unpack_from('<6h', report, 1)
        elif rid == 1 and len(report) >= 7:
            self.axes[:3] = struct.unpack_from('<3h', report, 1)
        elif rid == 2 and len(report) >= 7:
            self.axes[3:] = struct.unpack_from('<3h', report, 1)
        elif rid == 3:
            self.buttons = int.from_bytes(report[1:], 'little')
        else:
            self.bad += 1
            return False
        self.reports += 1
        return True


@dataclass
class SpaceMouseMapConfig:
    full_scale: float = field(default=350.0, metadata={'doc': 'raw value at full deflection'})
    axis_map: list[int] = field(default_factory=lambda: [1, 0, 2, 4, 3, 5], metadata={
        'doc': 'raw axis (tx ty tz rx ry rz) feeding each motion dim (vx vy vz wx wy wz / joint1..6)'})
    axis_scale: list[float] = field(default_factory=lambda: [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0], metadata={
        'doc': 'signs: defaults give base x = push away, y = left, z = lift; check on your device'})
    deadzone: float = field(default=0.05, metadata={
        'doc': 'an axis below this normalised deflection (|raw| / full_scale, 0..1) reads 0'})
    motion_threshold: float = field(default=0.15, metadata={'doc': 'normalised deflection that takes over'})
    auto_release_s: float = field(default=2.0, metadata={
        'doc': 'a motion-started takeover hands back after this long without motion (0 = never)'})
    takeover_button: int = field(default=0, metadata={'doc': 'bit index; press toggles a sticky takeover (-1 = none)'})
    gripper_button: int = field(default=1, metadata={
        'doc': 'bit index; press toggles the gripper open/closed (-1 = none)'})
    linear_speed: float = field(default=0.1, metadata={'doc': "'ee' mode: tool speed at full deflection (m/s)"})
    angular_speed: float = field(default=0.5, metadata={
        'doc': "'ee' mode: tool rotation speed at full deflection (rad/s)"})
    joint_speed: float = field(default=0.5, metadata={
        'doc': "'joint' mode: joint 1..6 speed at full deflection (rad/s)"})


class SpaceMouseMapper:
    def __init__(self, cfg: SpaceMouseMapConfig):
        if len(cfg.axis_map) != 6 or len(cfg.axis_scale) != 6:
            raise ValueError('axis_map and axis_scale need 6 values')
        self.cfg = cfg
        self.takeover = False
        self.sticky = False
        self._last_motion_t = None
        self._prev_buttons = 0

    def motion(self, raw_axes) -> np.ndarray:
        c = self.cfg
        raw = np.asarray(raw_axes, dtype=np.float64) / c.full_scale
        m = np.array([raw[i] for i in c.axis_map]) * np.asarray(c.axis_scale)
        m = np.clip(m, -1.0, 1.0)
        m[np.abs(m) < c.deadzone] = 0.0
        return m

    def map(self, raw_axes, buttons: int, now: float, mode: str = 'ee') -> DeviceInput:
        c = self.cfg
        pressed = buttons & ~self._prev_buttons
        self._prev_buttons = buttons
        m = self.motion(raw_axes)
        moving = float(np.max(np.abs(m))) > c.motion_threshold
        if c.takeover_button >= 0 and pressed >> c.takeover_button & 1:
            if self.sticky:
                self.sticky = self.takeover = False
            else:
                self.sticky = self.takeover = True
                self._last_motion_t = now
        if moving:
            self._last_motion_t = now
            self.takeover = True
        elif self.takeover and not self.sticky and c.auto_release_s > 0 and \
                now - self._last_motion_t > c.auto_release_s:
            self.takeover = False
        inp = DeviceInput(takeover=self.takeover,
                          gripper_toggle=bool(c.gripper_button >= 0 and pressed >> c.gripper_button & 1))
        if mode == 'joint':
            inp.joint_vel = m * c.joint_speed
        else:
            inp.twist = np.concatenate([m[:3] * c.linear_speed, m[3:] * c.angular_speed])
        return inp


def find_hidraw(sys_root: str = '/sys/class/hidraw') -> list[tuple[str, int, int]]:
    """(/dev/hidrawN, vendor, product) of every connected 3Dconnexion device (Linux sysfs)."""
    import glob
    import os
    found = []
    for node in sorted(glob.glob(os.path.join(sys_root, 'hidraw*'))):
        try:
            with open(os.path.join(node, 'device', 'uevent')) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith('HID_ID='):
                _bus, vendor, product = line.split('=', 1)[1].split(':')
                v, p = int(vendor, 16), int(product, 16)
                if v in VENDOR_IDS:
                    found.append(('/dev/' + os.path.basename(node), v, p))
    return found
