"""VR controller mapping (ROS-agnostic): WebXR controller samples -> DeviceInput (ee_abs mode).

Wire protocol (JSON text frames over the websocket, client -> server):
  {"type": "hello", "mode": "xr" | "emulated", "agent": "<navigator.userAgent>"}
  {"type": "pose", "t": <client ms>, "pos": [x, y, z], "quat": [x, y, z, w], "trigger": 0..1,
   "squeeze": 0..1, "buttons": [0|1, ...]}         (pose of the controller grip in 'local-floor')
  {"type": "event", "action": "start" | "success" | "failure" | "abort" | "reset"}
Server -> client: {"type": "status", "takeover": bool, "healthy": bool, "message": str}.

WebXR 'local-floor' axes: x right, y up, -z forward (away from the user). The robot base frame is
x forward, y left, z up, so p_robot = M p_xr with the proper rotation M below (and the same for
rotation vectors). Trigger >= trigger_threshold = takeover (hold to control); the end-effector
target is the pose it had at the trigger press plus the controller's motion since then (scaled).
xr-standard gamepad buttons: 0 trigger, 1 squeeze, 3 thumbstick, 4 A/X, 5 B/Y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .episode import ACTIONS
from .teleop_core import DeviceInput, quat_conj, quat_mul, quat_normalise

M_XR_TO_ROBOT = np.array([[0.0, 0.0, -1.0],
                          [-1.0, 0.0, 0.0],
                          [0.0, 1.0, 0.0]])


def xr_to_robot(pos_xyz, quat_xyzw):
    """WebXR position + quaternion (x, y, z, w) -> robot-frame position + quaternion (w, x, y, z)."""
    p = M_XR_TO_ROBOT @ np.asarray(pos_xyz, dtype=np.float64)
    x, y, z, w = (float(v) for v in quat_xyzw)
    v = M_XR_TO_ROBOT @ np.array([x, y, z])
    return p, quat_normalise(np.array([w, v[0], v[1], v[2]]))


def parse_message(msg: dict) -> dict:
    """Validate one decoded JSON message; raises ValueError with the reason."""
    if not isinstance(msg, dict) or 'type' not in msg:
        raise ValueError('message is not an object with a "type"')
    kind = msg['type']
    if kind == 'pose':
        pos, quat = msg.get('pos'), msg.get('quat')
        if not (isinstance(pos, list) and len(pos) == 3 and isinstance(quat, list) and len(quat) == 4):
            raise ValueError('pose needs pos[3] and quat[4]')
        vals = [float(v) for v in pos + quat]
        if not all(math.isfinite(v) for v in vals):
            raise ValueError('pose has NaN/inf')
        if abs(math.sqrt(sum(v * v for v in vals[3:])) - 1.0) > 0.1:
            raise ValueError('pose quaternion is not unit length')
        if max(abs(v) for v in vals[:3]) > 10.0:
            raise ValueError('pose position beyond 10 m')
        trigger = float(msg.get('trigger', 0.0))
        squeeze = float(msg.get('squeeze', 0.0))
        buttons = [1 if b else 0 for b in msg.get('buttons', [])][:16]
        if not (math.isfinite(trigger) and math.isfinite(squeeze)):
            raise ValueError('trigger/squeeze NaN')
        return {'type': 'pose', 'pos': vals[:3], 'quat': vals[3:], 'trigger': trigger, 'squeeze': squeeze,
                'buttons': buttons, 't': msg.get('t')}
    if kind == 'event':
        action = str(msg.get('action', '')).lower()
        if action not in ACTIONS:
            raise ValueError(f'unknown event action {action!r}')
        return {'type': 'event', 'action': action}
    if kind == 'hello':
        return {'type': 'hello', 'mode': str(msg.get('mode', '?'))[:32], 'agent': str(msg.get('agent', ''))[:300]}
    raise ValueError(f'unknown message type {kind!r}')


@dataclass
class VRMapConfig:
    trigger_threshold: float = field(default=0.5, metadata={'doc': 'trigger value that takes over'})
    position_scale: float = field(default=1.0, metadata={'doc': 'robot metres per controller metre'})
    follow_rotation: bool = field(default=True, metadata={'doc': 'apply controller rotation to the gripper'})
    gripper_button: int = field(default=4, metadata={'doc': 'xr-standard button index toggling the gripper (A/X)'})
    success_button: int = field(default=5, metadata={'doc': 'button index labelling success (B/Y); -1 = none'})
    max_offset_m: float = field(default=0.5, metadata={'doc': 'target offsets beyond this are clamped'})


class VRMapper:
    def __init__(self, cfg: VRMapConfig):
        self.cfg = cfg
        self.anchor = None            # (pos, quat) of the controller at the takeover press (robot frame)
        self._prev_buttons = []
        self.takeover = False

    def reanchor(self):
        """Forget the anchor: the next sample re-anchors (after a device comes back)."""
        self.anchor = None

    def map(self, sample: dict) -> DeviceInput:
        c = self.cfg
        p, q = xr_to_robot(sample['pos'], sample['quat'])
        buttons = sample['buttons']
        pressed = [b and not (i < len(self._prev_buttons) and self._prev_buttons[i]) for i, b in enumerate(buttons)]
        self._prev_buttons = buttons
        takeover = sample['trigger'] >= c.trigger_threshold
        if takeover and (not self.takeover or self.anchor is None):
            self.anchor = (p, q)
        self.takeover = takeover
        events = []
        if 0 <= c.success_button < len(pressed) and pressed[c.success_button]:
            events.append('success')
        inp = DeviceInput(takeover=takeover, events=events,
                          gripper_toggle=bool(0 <= c.gripper_button < len(pressed) and pressed[c.gripper_button]))
        if takeover:
            dp = (p - self.anchor[0]) * c.position_scale
            n = float(np.linalg.norm(dp))
            if n > c.max_offset_m:
                dp = dp * (c.max_offset_m / n)
            dq = quat_mul(q, quat_conj(self.anchor[1])) if c.follow_rotation else np.array([1.0, 0, 0, 0])
            inp.ee_offset = (dp, dq)
        return inp
