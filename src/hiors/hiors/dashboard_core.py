"""ROS-agnostic state of the Hi-ORS dashboard: episode outcomes, intervention rate, trainer
diagnostics and the active policy version, as a bounded JSON snapshot (thread-safe)."""
import collections
import threading
import time

from hiors_common.diagnostics import ERROR_KEYS, LEVEL_NAMES
from hiors_trainer.telemetry import STATUS_NAME as TRAINER_STATUS
from hiors_trainer.telemetry import TELEMETRY_KEYS as TRAINER_KEYS

OUTCOMES = ('success', 'failure', 'abort')


class DashboardState:
    def __init__(self, max_points: int = 2000, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._t0 = clock()
        self.max_points = int(max_points)
        self.episodes = collections.deque(maxlen=self.max_points)  # finished episodes
        self.counts = {k: 0 for k in OUTCOMES}
        self._ep_open = False
        self._ep_start = None
        self._ep_takeover = False
        self._human = False
        self._human_since = None
        self._human_total = 0.0
        self.policy_version = ''
        self.diag = {}       # status name -> {key: float}
        self.nodes = {}      # status name -> {'level', 'message', 'last_error', 'last_error_time', ...}
        self.series = collections.defaultdict(lambda: collections.deque(maxlen=self.max_points))

    def _now(self):
        return self._clock() - self._t0

    def episode_event(self, event: str):
        event = str(event).strip().lower()
        with self._lock:
            t = self._now()
            if event == 'start':
                self._ep_open, self._ep_start, self._ep_takeover = True, t, self._human
                return True
            if event not in OUTCOMES:
                return False
            self.counts[event] += 1
            self.episodes.append({'t': t, 'outcome': event, 'takeover': bool(self._ep_takeover),
                                  'duration': (t - self._ep_start) if self._ep_start is not None else None,
                                  'policy_version': self.policy_version})
            self._ep_open, self._ep_start, self._ep_takeover = False, None, False
            return True

    def intervention(self, active: bool):
        with self._lock:
            t = self._now()
            active = bool(active)
            if active and not self._human:
                self._human_since = t
                if self._ep_open:
                    self._ep_takeover = True
            elif not active and self._human and self._human_since is not None:
                self._human_total += t - self._human_since
                self._human_since = None
            self._human = active
            self.series['intervention'].append((t, 1.0 if active else 0.0))

    def policy_version_msg(self, version: str):
        with self._lock:
            self.policy_version = str(version)
            self.series['policy_version'].append((self._now(), self.policy_version))

    def diagnostics(self, statuses):
        """statuses: iterable of (name, level 0-3, message, [(key, value_str), ...]). Numeric values
        become series/cards; each node's level, message and last error (hiors_common.diagnostics:
        held for its hold time, with its wall time) are shown as text."""
        with self._lock:
            t = self._now()
            for name, level, message, kvs in statuses:
                node = {'level': LEVEL_NAMES.get(int(level), str(level)), 'message': str(message)}
                vals = self.diag.setdefault(str(name), {})
                for k, v in kvs:
                    if k in ERROR_KEYS:
                        node[k] = str(v)
                        continue
                    try:
                        f = float(v)
                    except (TypeError, ValueError):
                        continue
                    if f != f:   # NaN: keep last good value
                        continue
                    vals[k] = f
                    if k in TRAINER_KEYS and str(name) == TRAINER_STATUS:
                        self.series[k].append((t, f))
                self.nodes[str(name)] = node

    def snapshot(self) -> dict:
        with self._lock:
            t = self._now()
            eps = list(self.episodes)
            n = len(eps)
            succ = sum(e['outcome'] == 'success' for e in eps)
            takeovers = sum(e['takeover'] for e in eps)
            human_total = self._human_total + (
                (t - self._human_since) if self._human and self._human_since is not None else 0.0)
            # success rate over the last 20 episodes, per episode (for plotting)
            rate_series, window = [], collections.deque(maxlen=20)
            for e in eps:
                window.append(e['outcome'] == 'success')
                rate_series.append((e['t'], sum(window) / len(window)))
            # Only the trainer's status: the policy's 'version' is another number.
            vals = self.diag.get(TRAINER_STATUS, {})
            trainer = {k: vals[k] for k in TRAINER_KEYS if k in vals}
            return {
                'time': t,
                'episodes': {'total': n, **self.counts, 'open': self._ep_open,
                             'success_rate': (succ / n) if n else None,
                             'takeover_rate': (takeovers / n) if n else None,
                             'recent': eps[-20:]},
                'intervention': {'active': self._human,
                                 'time_fraction': (human_total / t) if t > 0 else 0.0},
                'policy_version': self.policy_version,
                'trainer': trainer,
                'diagnostics': {k: dict(v) for k, v in self.diag.items()},
                'nodes': {k: dict(v) for k, v in sorted(self.nodes.items())},
                'series': {'success_rate': rate_series,
                           **{k: list(v) for k, v in self.series.items()}},
            }


def _page() -> bytes:
    import os
    with open(os.path.join(os.path.dirname(__file__), 'web', 'index.html'), 'rb') as f:
        return f.read()


def start_server(state: DashboardState, host: str = '127.0.0.1', port: int = 8088):
    """Serve the page and /api/state from a daemon thread; returns (server, url). port 0 = free port."""
    import http.server
    import json

    page = _page()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, code, body, ctype):
            self.send_response(code)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split('?')[0]
            if path in ('/', '/index.html'):
                self._send(200, page, 'text/html; charset=utf-8')
            elif path == '/api/state':
                self._send(200, json.dumps(state.snapshot()).encode(), 'application/json')
            else:
                self._send(404, b'not found', 'text/plain')

        def log_message(self, *a):   # keep node logs quiet
            pass

    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name='dashboard-http').start()
    h, p = server.server_address[:2]
    return server, f'http://{h}:{p}/'
