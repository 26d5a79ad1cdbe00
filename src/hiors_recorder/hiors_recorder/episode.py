"""Episode metadata (`episode.json`) and the on-disk layout of one episode.

    <episode_root>/<episode_id>/
        bag/                 rosbag2 bag: metadata.yaml + bag.mcap (MCAP storage)
        episode.json         written atomically when the episode is finished (or recovered)
        RECORDING.json       present while recording; a directory without episode.json is unfinished

An episode directory is finished if and only if `episode.json` exists and parses: it is written
with write-to-temp + fsync + rename, so a crash leaves either no file or the complete file.
Directories whose names start with '_' or '.' (e.g. `_quarantine`) are never episodes.
"""
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

from hiors_common.atomic import atomic_write_json, fsync_dir  # noqa: F401 (re-exported)

from . import __version__ as RECORDER_VERSION

SCHEMA = 'hiors-episode-v1'
EPISODE_FILE = 'episode.json'
MARKER_FILE = 'RECORDING.json'
BAG_DIR = 'bag'
QUARANTINE_DIR = '_quarantine'
OUTCOMES = ('success', 'failure', 'abort')


class EpisodeError(RuntimeError):
    """A bad, truncated or unreadable episode; the message names the file."""


def reward_for(outcome: str) -> float:
    return 1.0 if outcome == 'success' else 0.0


@dataclass
class EpisodeInfo:
    episode_id: str
    outcome: str
    reward: float
    start_time: float                     # unix seconds (receive time of the start event)
    end_time: float
    steps: int = 0                        # executed actions recorded
    num_interventions: int = 0
    intervention_spans: list = field(default_factory=list)   # [[start_s, end_s]] since start_time
    intervention_time_s: float = 0.0
    robot: str = ''
    task: str = ''
    policy_version: str = ''              # checkpoint version active when the episode started
    policy_versions: list = field(default_factory=list)      # every version seen during it
    recorder_version: str = RECORDER_VERSION
    topics: dict = field(default_factory=dict)                # role -> topic; 'cameras': {name: topic}
    topic_counts: dict = field(default_factory=dict)
    dropped_messages: dict = field(default_factory=dict)
    recovered: bool = False               # rebuilt after a recorder crash (outcome stays 'abort')
    end_reason: str = ''
    label_history: list = field(default_factory=list)
    schema: str = SCHEMA
    path: str = ''                        # episode directory (not stored in the file)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_time - self.start_time)

    @property
    def bag_path(self) -> str:
        return os.path.join(self.path, BAG_DIR)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d['duration_s'] = self.duration_s
        return d

    def to_json_dict(self) -> dict:
        d = self.to_dict()
        d.pop('path')
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str = '') -> 'EpisodeInfo':
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ('episode_id', 'outcome', 'reward', 'start_time', 'end_time') if k not in d]
        if missing:
            raise EpisodeError(f'{os.path.join(path, EPISODE_FILE)}: missing fields {missing}')
        if d['outcome'] not in OUTCOMES:
            raise EpisodeError(f'{os.path.join(path, EPISODE_FILE)}: bad outcome {d["outcome"]!r}')
        kwargs = {k: v for k, v in d.items() if k in names and k != 'path'}
        return cls(**kwargs, path=path)


def new_episode_id(t: float | None = None, counter: int = 0) -> str:
    """Sortable, unique id: UTC time to the millisecond plus a counter and the pid."""
    t = time.time() if t is None else t
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime(t)) + f'.{int((t % 1) * 1000):03d}Z'
    return f'ep_{stamp}_{os.getpid() % 100000:05d}_{counter:04d}'




def read_episode_info(episode_dir: str) -> EpisodeInfo:
    path = os.path.join(episode_dir, EPISODE_FILE)
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError as exc:
        raise EpisodeError(f'{path}: no episode.json (episode unfinished or not an episode)') from exc
    except (OSError, ValueError) as exc:
        raise EpisodeError(f'{path}: cannot read episode metadata: {exc}') from exc
    if not isinstance(d, dict):
        raise EpisodeError(f'{path}: episode metadata is not a JSON object')
    try:
        return EpisodeInfo.from_dict(d, path=os.path.abspath(episode_dir))
    except TypeError as exc:
        raise EpisodeError(f'{path}: bad episode metadata: {exc}') from exc


def write_episode_info(info: EpisodeInfo, episode_dir: str | None = None):
    episode_dir = episode_dir or info.path
    atomic_write_json(os.path.join(episode_dir, EPISODE_FILE), info.to_json_dict())


def find_episode_dir(root: str, episode_id: str) -> str:
    path = os.path.join(os.path.expanduser(root), episode_id)
    if not os.path.isdir(path) or episode_id.startswith(('_', '.')) or os.sep in episode_id:
        raise EpisodeError(f'no episode {episode_id!r} under {root}')
    return path


def relabel_episode(root: str, episode_id: str, outcome: str, note: str = '', by: str = '') -> EpisodeInfo:
    """A person corrects an episode's outcome; the change is kept in `label_history`."""
    if outcome not in OUTCOMES:
        raise ValueError(f'outcome must be one of {OUTCOMES}, not {outcome!r}')
    info = read_episode_info(find_episode_dir(root, episode_id))
    info.label_history.append({
        'time': time.time(), 'from': info.outcome, 'to': outcome, 'note': note,
        'by': by or os.environ.get('USER', '') or 'unknown'})
    info.outcome = outcome
    info.reward = reward_for(outcome)
    write_episode_info(info)
    return info
