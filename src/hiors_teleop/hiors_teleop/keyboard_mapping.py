"""Terminal keyboard mapping (ROS-agnostic): key bytes -> DeviceInput.

A terminal gives key presses only (no releases), so takeover is a toggle and motion keys move the
target by a fixed step per press (key auto-repeat gives continuous motion while held).

Default keys ("key=action"; `space`, `enter`, `esc` name those keys):
  space  toggle takeover            n start    g success    b failure    x abort    r reset
  q/a joint1 (or x) +/-   w/s joint2 (y)   e/d joint3 (z)   u/j joint4 (roll)   i/k joint5 (pitch)
  o/l joint6 (yaw)         ] open gripper   [ close gripper  h help
  p  E-STOP (the mux holds position)        P  clear the e-stop
"""
from __future__ import annotations

import numpy as np

from .teleop_core import DeviceInput

DEFAULT_KEYMAP = [
    'space=takeover', 'n=start', 'g=success', 'b=failure', 'x=abort', 'r=reset', 'h=help',
    'q=+0', 'a=-0', 'w=+1', 's=-1', 'e=+2', 'd=-2', 'u=+3', 'j=-3', 'i=+4', 'k=-4', 'o=+5', 'l=-5',
    ']=+grip', '[=-grip', 'p=estop', 'P=estop_clear',
]
_NAMED = {'space': ' ', 'enter': '\r', 'esc': '\x1b', 'tab': '\t'}
ACTIONS = ('takeover', 'start', 'success', 'failure', 'abort', 'reset', 'help', 'estop', 'estop_clear')


def parse_keymap(entries) -> dict:
    keymap = {}
    for entry in entries:
        key, sep, action = str(entry).partition('=')
        if not sep or not key:
            raise ValueError(f'keymap entry {entry!r} is not "key=action"')
        key = _NAMED.get(key, key)
        if len(key) != 1:
            raise ValueError(f'keymap key {key!r} must be one character or one of {list(_NAMED)}')
        if action not in ACTIONS and not (action[:1] in '+-' and (action[1:] == 'grip' or
                                                                  action[1:] in '012345' and len(action) == 2)):
            raise ValueError(f'keymap action {action!r} unknown (use {ACTIONS}, +N/-N for axis N, +grip/-grip)')
        if key in keymap:
            raise ValueError(f'key {key!r} mapped twice')
        keymap[key] = action
    return keymap


def help_text(keymap: dict) -> str:
    inv = {}
    for k, a in keymap.items():
        inv.setdefault(a, []).append({' ': 'space', '\r': 'enter', '\x1b': 'esc'}.get(k, k))
    return 'keys: ' + ', '.join(f'{"/".join(v)}={a}' for a, v in inv.items())


class KeyboardMapper:
    def __init__(self, keymap_entries=None, joint_step: float = 0.05, linear_step: float = 0.01,
                 angular_step: float = 0.05, gripper_step: float = 0.005):
        self.keymap = parse_keymap(keymap_entries or DEFAULT_KEYMAP)
        self.joint_step, self.linear_step = joint_step, linear_step
        self.angular_step, self.gripper_step = angular_step, gripper_step
        self.takeover = False
        self.unknown = []

    def feed(self, data: bytes, mode: str = 'joint') -> tuple[DeviceInput, bool]:
        """Decode a chunk of terminal bytes. Returns (input, help_requested)."""
        step = np.zeros(6)
        grip = 0.0
        events = []
        estop = None
        want_help = False
        text = data.decode('utf-8', errors='ignore')
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == '\x1b' and text[i + 1:i + 2] == '[':   # skip arrow/function-key escape sequences
                j = i + 2
                while j < len(text) and not text[j].isalpha() and text[j] != '~':
                    j += 1
                i = j + 1
                continue
            i += 1
            action = self.keymap.get(ch)
            if action is None:
                self.unknown.append(ch)
                continue
            if action == 'takeover':
                self.takeover = not self.takeover
            elif action == 'help':
                want_help = True
            elif action == 'estop':
                estop = True
            elif action == 'estop_clear':
                estop = False if estop is None else estop   # engage wins within one read
            elif action in ACTIONS:
                events.append(action)
            elif action.endswith('grip'):
                grip += self.gripper_step * (1 if action[0] == '+' else -1)
            else:
                axis = int(action[1])
                sign = 1.0 if action[0] == '+' else -1.0
                if mode == 'joint':
                    step[axis] += sign * self.joint_step
                else:
                    step[axis] += sign * (self.linear_step if axis < 3 else self.angular_step)
        inp = DeviceInput(takeover=self.takeover, events=events, gripper_step=grip or None, estop=estop)
        if np.any(step):
            if mode == 'joint':
                inp.joint_step = step
            else:
                inp.ee_step = step
        return inp, want_help
