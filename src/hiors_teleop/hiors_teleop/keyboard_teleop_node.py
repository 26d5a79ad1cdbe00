"""Keyboard (terminal) teleop: takeover toggle, episode labels, and step jogging.

Reads key presses from its terminal (stdin, or `tty_path`) in cbreak mode without blocking the
executor. Needs a terminal: under the bringup runner (no tty) start it yourself in a terminal:
`python -m hiors_teleop.keyboard_teleop_node`, or set tty_path to a terminal device. The terminal
closing counts as a lost device (mid-takeover the mux then holds, not the policy).
"""
import os
import select
import sys
import termios
import tty
from dataclasses import dataclass, field

from hiors_common.node_main import run_node

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .keyboard_mapping import DEFAULT_KEYMAP, KeyboardMapper, help_text


@dataclass
class KeyboardTeleopConfig(TeleopNodeConfig):
    tty_path: str = field(default='', metadata={
        'doc': "terminal to read ('' = this process's stdin: the node needs a terminal, so run it yourself "
               "or set this)"})
    keymap: list[str] = field(default_factory=lambda: list(DEFAULT_KEYMAP),
                              metadata={'doc': '"key=action" entries, see keyboard_mapping'})
    joint_step: float = 0.05             # rad per key press (joint mode)
    linear_step: float = 0.01            # m per key press (ee mode)
    angular_step: float = 0.05           # rad per key press (ee mode)
    gripper_step: float = 0.005          # m per finger per key press


class KeyboardTeleopNode(DeviceTeleopNode):
    device_name = 'keyboard'

    def __init__(self):
        super().__init__('keyboard_teleop', KeyboardTeleopConfig)
        c = self.cfg
        self.mapper = KeyboardMapper(c.keymap, c.joint_step, c.linear_step, c.angular_step, c.gripper_step)
        self.fd = None
        self._own_fd = False
        self._saved = None
        self._eof = False
        self._reported = False
        try:
            if c.tty_path:
                self.fd = os.open(c.tty_path, os.O_RDONLY | os.O_NOCTTY)
                self._own_fd = True
            else:
                self.fd = sys.stdin.fileno()
            if not os.isatty(self.fd):
                raise OSError(f'{c.tty_path or "stdin"} is not a terminal')
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)   # keys arrive one by one, no echo; Ctrl-C still interrupts
        except (OSError, termios.error, ValueError) as exc:
            self.get_logger().error(
                f'keyboard teleop needs a terminal ({exc}); run `python -m hiors_teleop.keyboard_teleop_node` '
                'in a terminal or set tty_path. No keyboard input until then.')
            self.fd = None
        if self.fd is not None:
            self.get_logger().info(help_text(self.mapper.keymap))
            self.start_waker()

    def wait_handle(self):
        return None if self.fd is None or self._eof else self.fd

    def poll(self, now):
        if self.fd is None:
            return None, False, 'no terminal'
        if self._eof:
            return None, False, 'terminal closed'
        data = b''
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 256)
            if not chunk:
                self._eof = True
                return None, False, 'terminal closed (EOF)'
            data += chunk
        inp, want_help = self.mapper.feed(data, self.core.mode)
        if want_help:
            self.get_logger().info(help_text(self.mapper.keymap))
        if self.mapper.unknown and not self._reported:
            self._reported = True
            self.get_logger().info(f'unmapped key {self.mapper.unknown[-1]!r} (h = help)')
        self.mapper.unknown.clear()
        return inp, True, ''

    def close(self):
        self.stop_waker()
        if self.fd is not None and self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
        if self._own_fd and self.fd is not None:
            os.close(self.fd)
            self.fd = None


def main(args=None):
    run_node(lambda: KeyboardTeleopNode(), args)


if __name__ == '__main__':
    main()
