"""Keep DDS traffic on this machine.

Fast DDS discovery multicasts beyond the host by default. Every test, benchmark and simulated
bringup calls `use_local_ros_network()` before rclpy is initialised, so discovery stays on
loopback and each process group gets its own ROS domain.
"""
import os

LOCAL_RANGE = 'LOCALHOST'
# Domain ids 0..101 are safe with Fast DDS default ports on Linux; keep 0 for the user's own graph.
_DOMAIN_MIN, _DOMAIN_MAX = 1, 101


def domain_id_for(key: int) -> int:
    """Map any integer (a pid, a process-group id) to a usable ROS_DOMAIN_ID."""
    return _DOMAIN_MIN + key % (_DOMAIN_MAX - _DOMAIN_MIN + 1)


def use_local_ros_network(domain_id: int | None = None, env: dict | None = None) -> dict:
    """Restrict discovery to localhost and set a per-process-group domain id.

    Works on `env` (default: os.environ) and returns it. An explicit `domain_id` wins; an
    already-set ROS_DOMAIN_ID is kept (a parent process chose it for the whole group); otherwise
    the id is derived from the process group so concurrent test runs do not see each other.
    """
    env = os.environ if env is None else env
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = LOCAL_RANGE
    env.pop('ROS_STATIC_PEERS', None)
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    elif not env.get('ROS_DOMAIN_ID'):
        env['ROS_DOMAIN_ID'] = str(domain_id_for(os.getpgid(0)))
    return env
