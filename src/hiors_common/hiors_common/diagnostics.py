"""One node's status on /diagnostics, with errors that stay visible.

A node publishes its current state (often at 1 Hz); a rejected checkpoint's ERROR would be
overwritten by the next OK within a second and no dashboard or rqt_robot_monitor user would see it.
So the published level is the worst level of the last `hold_s` seconds (ROS parameter
`diagnostics_hold_s`, default 10 s, declared here once for every node), and every status carries the
last ERROR (or STALE) message with its wall time (`last_error`, `last_error_level`,
`last_error_time`, `last_error_age_s`), which WARNs never overwrite. The hold logic is `StickyStatus` (no ROS; the
dashboard reads the same names from here).
"""
import time

from .topics import DIAGNOSTICS

# diagnostic_msgs/DiagnosticStatus levels as plain ints (rclpy's constants are bytes).
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}
ERROR_KEYS = ('last_error', 'last_error_level', 'last_error_time', 'last_error_age_s')
HOLD_PARAM = 'diagnostics_hold_s'      # a parameter of every node with a DiagnosticsPublisher
DEFAULT_HOLD_S = 10.0
HOLD_DOC = 'seconds an ERROR / WARN stays the published /diagnostics level (and the last error is shown)'


def level_int(level) -> int:
    """rclpy gives DiagnosticStatus levels as bytes; plain ints everywhere else."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


class StickyStatus:
    """Worst level of the last `hold_s` seconds, and the last error (ERROR or worse) with its time."""

    def __init__(self, hold_s: float = DEFAULT_HOLD_S):
        self.hold_s = hold_s
        self._recent = []            # (level, message, monotonic t) of the problems within hold_s
        self.last_error = None       # (level, message, wall time)

    def update(self, level, message: str, now: float, wall: float) -> tuple[int, str, dict]:
        """The status to publish for (level, message) now: (level, message, extra values)."""
        level = level_int(level)
        if level >= WARN:
            self._recent.append((level, message, now))
        if level >= ERROR:
            self.last_error = (level, message, wall)
        self._recent = [p for p in self._recent if now - p[2] <= self.hold_s]
        out_level, out_message = level, message
        if self._recent:
            held_level, held_message, t = max(self._recent, key=lambda p: (p[0], p[2]))   # worst, latest
            if held_level > level:
                out_level = held_level
                out_message = f'{message} (held {LEVEL_NAMES[held_level]} {now - t:.0f} s ago: {held_message})'
        extra = {}
        if self.last_error is not None:
            e_level, e_message, e_wall = self.last_error
            extra = {'last_error': e_message, 'last_error_level': LEVEL_NAMES[e_level],
                     'last_error_time': time.strftime('%H:%M:%S', time.localtime(e_wall)),
                     'last_error_age_s': f'{wall - e_wall:.1f}'}
        return out_level, out_message, extra


class DiagnosticsPublisher:
    def __init__(self, node, name: str | None = None, hardware_id: str = 'hiors'):
        from diagnostic_msgs.msg import DiagnosticArray
        self._node = node
        self._name = name or node.get_fully_qualified_name()
        self._hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        if not node.has_parameter(HOLD_PARAM):
            from rcl_interfaces.msg import ParameterDescriptor
            node.declare_parameter(HOLD_PARAM, DEFAULT_HOLD_S, ParameterDescriptor(description=HOLD_DOC))
        self.sticky = StickyStatus(float(node.get_parameter(HOLD_PARAM).value))

    def publish(self, level, message: str, values: dict | None = None):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        level, message, extra = self.sticky.update(level, message, time.monotonic(), time.time())
        status = DiagnosticStatus(level=bytes([level]), name=self._name, message=message,
                                  hardware_id=self._hardware_id)
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in {**(values or {}), **extra}.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [status]
        self._pub.publish(msg)
