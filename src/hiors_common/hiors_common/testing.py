"""Test helpers: nodes as separate processes, and waiting on conditions while spinning."""
import os
import signal
import subprocess
import sys
import time

from .ros_env import use_local_ros_network


class NodeProcess:
    """Run `python -m module` (a node's main) as its own process, with the local ROS network
    settings of this test session and its output kept in a log file for failure messages."""

    def __init__(self, module: str, ros_args: list[str] | None = None, args: list[str] | None = None,
                 env: dict | None = None, log_path: str | None = None):
        self.module = module
        cmd = [sys.executable, '-m', module] + list(args or [])
        if ros_args:
            cmd += ['--ros-args'] + list(ros_args)
        self.cmd = cmd
        self.env = use_local_ros_network(env=dict(os.environ, **(env or {})))
        self.env.setdefault('PYTHONUNBUFFERED', '1')
        self.log_path = log_path or f'/tmp/hiors-test-{module.replace(".", "_")}-{os.getpid()}.log'
        self.proc = None

    def start(self):
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ''

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGINT, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def spin_until(node, predicate, timeout: float, executor=None) -> bool:
    """Spin `node` until `predicate()` is true or `timeout` seconds pass."""
    import rclpy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if executor is not None:
            executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(node, timeout_sec=0.05)
        if predicate():
            return True
    return predicate()
