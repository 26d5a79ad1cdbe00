"""Process supervisor for the pip-only runner: one OS process per node, a log file per node,
restart policy per node, clean Ctrl-C shutdown (SIGINT to every node, then SIGKILL stragglers)."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from hiors_common.paths import package_file
from hiors_common.ros_env import use_local_ros_network

from .graph import RESTART_LIMIT, NodeSpec, should_restart


def _param_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_param_value(v) for v in value) + ']'
    if isinstance(value, str):
        # Quote strings so YAML does not turn '1.0' or 'true' into another type.
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def node_command(spec: NodeSpec, python: str = sys.executable) -> list[str]:
    cmd = [python, '-m', spec.module, '--ros-args', '-r', f'__node:={spec.name}']
    if spec.params_file:
        cmd += ['--params-file', package_file(spec.package, 'config', spec.params_file)]
    for key, value in spec.parameters.items():
        cmd += ['-p', f'{key}:={_param_value(value)}']
    for src, dst in spec.remappings:
        if src != dst:
            cmd += ['-r', f'{src}:={dst}']
    return cmd


@dataclass
class _Running:
    spec: NodeSpec
    proc: subprocess.Popen
    log: object
    started: float
    restarts: int = 0


class Supervisor:
    """Start, watch and stop a set of node processes.

    Each node restarts per its spec's restart policy (graph.RESTART_POLICIES; the decision is
    graph.should_restart, the same one bringup.launch.py uses): 'always' after any exit while the
    graph runs, 'on-failure' only after a non-zero exit or a signal, 'never' not at all. A
    `required` node ending (any exit code) stops the whole graph, like launch's Shutdown.
    """

    def __init__(self, specs: list[NodeSpec], log_dir: str, env: dict | None = None,
                 max_restarts: int = RESTART_LIMIT, echo=print):
        self.specs = specs
        self.log_dir = log_dir
        self.env = use_local_ros_network(env=dict(os.environ if env is None else env))
        self.env.setdefault('PYTHONUNBUFFERED', '1')
        self.max_restarts = max_restarts
        self.echo = echo
        self.running: dict[str, _Running] = {}
        self.exit_codes: dict[str, int] = {}
        self.restart_counts: dict[str, int] = {}
        self._stop = False
        self.failed: list[str] = []
        self.interrupted = False          # Ctrl-C / SIGTERM ended run()
        os.makedirs(log_dir, exist_ok=True)

    def _start(self, spec: NodeSpec, restarts: int = 0):
        log = open(os.path.join(self.log_dir, f'{spec.name}.log'), 'a')
        log.write(f'\n=== start {time.strftime("%H:%M:%S")} (restart {restarts}): '
                  f'{" ".join(node_command(spec))}\n')
        log.flush()
        proc = subprocess.Popen(node_command(spec), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.running[spec.name] = _Running(spec, proc, log, time.monotonic(), restarts)

    def start(self):
        for spec in self.specs:
            self._start(spec)
        self.echo(f'[hiors] started {len(self.specs)} nodes; logs in {self.log_dir}')
        return self

    def pid(self, name: str) -> int:
        return self.running[name].proc.pid

    def poll(self) -> bool:
        """Check every node once; restart per policy. Returns False once the graph should stop."""
        for name, r in list(self.running.items()):
            code = r.proc.poll()
            if code is None:
                continue
            r.log.write(f'=== exit {code} at {time.strftime("%H:%M:%S")}\n')
            r.log.close()
            del self.running[name]
            self.exit_codes[name] = code
            if self._stop:
                continue
            if r.spec.required:
                self.echo(f'[hiors] {name} finished (exit {code}); stopping the graph')
                if code != 0:
                    self.failed.append(name)
                return False
            again = should_restart(r.spec.restart, code)
            if again and r.restarts < self.max_restarts:
                # Quick crash loops back off; a node that ran a while restarts at once.
                if time.monotonic() - r.started < 2.0:
                    time.sleep(min(5.0, 0.5 * (r.restarts + 1)))
                self.echo(f'[hiors] {name} exited with {code}; restarting '
                          f'({r.restarts + 1}/{self.max_restarts}), log: {self.log_dir}/{name}.log')
                self.restart_counts[name] = r.restarts + 1
                self._start(r.spec, r.restarts + 1)
            elif code != 0:
                self.echo(f'[hiors] {name} failed with exit {code}; see {self.log_dir}/{name}.log')
                self.failed.append(name)
        return True

    def run(self, duration: float | None = None) -> int:
        """Supervise until Ctrl-C, a required node ends, or `duration` seconds pass."""
        deadline = None if duration is None else time.monotonic() + duration
        previous = signal.getsignal(signal.SIGINT)
        interrupted = []
        signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        signal.signal(signal.SIGTERM, lambda *_: interrupted.append(True))
        try:
            while not interrupted and self.poll():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
        finally:
            self.interrupted = bool(interrupted)
            self.shutdown()
            signal.signal(signal.SIGINT, previous)
        return 1 if self.failed else 0

    def shutdown(self, timeout: float | None = None):
        """SIGINT every node; SIGKILL those still running after their spec's stop_timeout_s
        (or `timeout` for all)."""
        self._stop = True
        for r in self.running.values():
            if r.proc.poll() is None:
                try:
                    os.killpg(r.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        t0 = time.monotonic()
        deadlines = {name: t0 + (r.spec.stop_timeout_s if timeout is None else timeout)
                     for name, r in self.running.items()}
        while any(r.proc.poll() is None and time.monotonic() < deadlines[name]
                  for name, r in self.running.items()):
            time.sleep(0.1)
        for name, r in self.running.items():
            if r.proc.poll() is None:
                self.echo(f'[hiors] {name} did not stop on SIGINT; killing it')
                try:
                    os.killpg(r.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                r.proc.wait(5)
            self.exit_codes[name] = r.proc.returncode
            r.log.close()
        self.running.clear()
