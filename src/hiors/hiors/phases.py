"""Phases of a run on the simulated arm, shared by the main job (`hiors demo`) and the learning
benchmark: run the node graph until a number of episodes is done, list finished episodes, keys.

A phase is one bringup of the graph (supervised processes, a log per node) with the simulated
human counting episodes; progress is one printed line per finished episode.
"""
import logging
import os
import threading
import time

from hiors_common.atomic import atomic_write_text

from .graph import bringup_graph
from .supervisor import Supervisor


def say(msg, tag='hiors'):
    print(f'[{tag} {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def episodes(episode_dir):
    """Finished episodes, oldest first, as plain dicts (through the recorder's dataset library)."""
    from hiors_recorder.dataset import list_episodes
    if not os.path.isdir(episode_dir):
        return []
    logging.getLogger('hiors_recorder').setLevel(logging.ERROR)
    return [info.to_dict() for info in list_episodes(episode_dir)]


def success_rate(episode_dir):
    eps = episodes(episode_dir)
    if not eps:
        return 0.0, 0
    return sum(e['outcome'] == 'success' for e in eps) / len(eps), len(eps)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sound at small n and at 0% / 100%)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f'{successes} successes out of {n} trials')
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def frames(episode_dir):
    """Recorded steps (executed actions) of all finished episodes."""
    return sum(int(e.get('steps', 0)) for e in episodes(episode_dir))


def ensure_checkpoint_key(out):
    """A per-run HMAC key for checkpoint signing, exported to every node of the run."""
    key_file = os.path.join(out, 'checkpoint.key')
    if not os.path.exists(key_file):
        atomic_write_text(key_file, os.urandom(32).hex(), mode=0o600)
    os.environ['HIORS_CHECKPOINT_KEY_FILE'] = key_file
    return key_file


class EpisodeWatcher(threading.Thread):
    """Prints one line per finished episode while a phase runs (progress for a long job)."""

    def __init__(self, episode_dir, label, total, echo=say):
        super().__init__(daemon=True)
        self.episode_dir, self.label, self.total, self.echo = episode_dir, label, total, echo
        self.seen = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            self.poll()

    def poll(self):
        for info in episodes(self.episode_dir):
            if info['episode_id'] in self.seen:
                continue
            self.seen.add(info['episode_id'])
            self.echo(f'{self.label} episode {len(self.seen)}/{self.total}: {info["outcome"]:8s} '
                      f'steps={info.get("steps", "?")} interventions={info.get("num_interventions", 0)}')


def run_phase(label, out, overrides, total, timeout, echo=say):
    """Bring the graph up with `overrides` until the simulated human has run its episodes (or
    `timeout` s); logs under <out>/logs/<label>/. Ctrl-C stops the whole run (exit 130)."""
    episode_dir = overrides['episode_dir']
    watcher = EpisodeWatcher(episode_dir, label, total, echo)
    watcher.start()
    sup = Supervisor(bringup_graph(overrides), os.path.join(out, 'logs', label), echo=echo).start()
    code = sup.run(duration=timeout)
    watcher.stop.set()
    watcher.poll()
    if code != 0:
        echo(f'{label}: nodes failed: {sup.failed} (logs in {out}/logs/{label})')
    if sup.interrupted:
        echo('interrupted: stopping')
        raise SystemExit(130)
    return sup


__all__ = ['say', 'episodes', 'success_rate', 'frames', 'ensure_checkpoint_key', 'EpisodeWatcher', 'run_phase']
