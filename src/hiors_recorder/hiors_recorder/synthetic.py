"""Serialized standard messages (CDR, via rosbags) and synthetic episodes for tests.

`write_synthetic_episode` drives the real recorder core (same writer, same episode.json) with
generated messages, so other packages' tests can get real episode bags without DDS or a robot.
"""
import numpy as np

from . import bagio
from .dataset import JOINT_NAMES


def _types():
    return bagio.typestore().types


def _header(stamp_ns: int, frame_id: str = ''):
    t = _types()
    return t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](
        sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)), frame_id=frame_id)


def _ser(msg, msgtype):
    return bytes(bagio.typestore().serialize_cdr(msg, msgtype))


def joint_state(positions, stamp_ns: int = 0, names=JOINT_NAMES, frame_id: str = '') -> bytes:
    t = _types()
    pos = np.asarray(positions, dtype=np.float64)
    msg = t[bagio.JOINT_STATE](header=_header(stamp_ns, frame_id), name=list(names), position=pos,
                               velocity=np.zeros(0), effort=np.zeros(0))
    return _ser(msg, bagio.JOINT_STATE)


def image(rgb: np.ndarray, stamp_ns: int = 0, frame_id: str = '') -> bytes:
    t = _types()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    msg = t[bagio.IMAGE](header=_header(stamp_ns, frame_id), height=h, width=w, encoding='rgb8',
                         is_bigendian=0, step=w * 3, data=rgb.reshape(-1))
    return _ser(msg, bagio.IMAGE)


def boolean(value: bool) -> bytes:
    return _ser(_types()[bagio.BOOL](data=bool(value)), bagio.BOOL)


def string(value: str) -> bytes:
    return _ser(_types()[bagio.STRING](data=str(value)), bagio.STRING)


def float64_array(values, dims=()) -> bytes:
    t = _types()
    arr = np.asarray(values, dtype=np.float64)
    layout = t['std_msgs/msg/MultiArrayLayout'](dim=[
        t['std_msgs/msg/MultiArrayDimension'](label=label, size=size, stride=stride)
        for label, size, stride in dims], data_offset=0)
    return _ser(t[bagio.FLOAT64_MULTI_ARRAY](layout=layout, data=arr.reshape(-1)), bagio.FLOAT64_MULTI_ARRAY)


def write_synthetic_episode(root: str, steps: int = 20, rate_hz: float = 10.0, outcome: str = 'success',
                            cameras=('front', 'wrist'), image_size=(32, 32), intervene=(5, 10),
                            policy_version: str = 'v000001', seed: int = 0, start_ns: int | None = None,
                            state_per_step: int = 2, flush_interval_s: float = 1.0):
    """Record one episode through the recorder core and return its EpisodeInfo.

    The state at step k is waypoint k of a smooth random trajectory and the executed action at
    step k is waypoint k+1 (the next step's state, so a learner can fit it); steps in
    [intervene[0], intervene[1]) come from the human.
    Images encode the step index k as red = 8 * k % 256 (whole image), so alignment can be checked.
    """
    import time

    from .recorder import EpisodeRecorder, RecorderConfig
    rng = np.random.default_rng(seed)
    cfg = RecorderConfig(episode_dir=root, cameras=list(cameras), min_free_mb=0.0,
                         flush_interval_s=flush_interval_s)
    t0 = int(time.time() * 1e9) if start_ns is None else int(start_ns)
    rec = EpisodeRecorder(cfg, now_ns=lambda: t0)
    topics = cfg.topics()
    dt = int(1e9 / rate_hz)
    waypoints = np.cumsum(rng.normal(0, 0.05, size=(steps + 2, len(JOINT_NAMES))), axis=0)
    rec.on_message(topics['policy_version'], string(policy_version), t0 - 1000)
    rec.on_message(topics['event'], string('start'), t0)
    lo, hi = intervene if intervene else (-1, -1)
    for k in range(steps):
        tk = t0 + (k + 1) * dt
        for j in range(state_per_step):     # joint states faster than the control rate
            ts = tk - dt + (j + 1) * dt // state_per_step - dt // (2 * state_per_step)
            frac = (j + 1) / state_per_step  # the arm reaches waypoint k by step k's tick
            q = waypoints[max(k - 1, 0)] * (1 - frac) + waypoints[k] * frac
            rec.on_message(topics['joint_states'], joint_state(q, ts), ts)
        for ci, name in enumerate(cameras):
            img = np.full((*image_size, 3), 40 * ci, dtype=np.uint8)
            img[:, :, 0] = (8 * k) % 256     # step index, in a form that survives video coding
            rec.on_message(topics['cameras'][name], image(img, tk - 1000, name), tk - 1000)
        human = lo <= k < hi
        if k == lo:
            rec.on_message(topics['intervention'], boolean(True), tk - 500)
        if k == hi:
            rec.on_message(topics['intervention'], boolean(False), tk - 500)
        if not human:
            chunk = np.repeat(waypoints[k + 1][None], 4, axis=0)
            rec.on_message(topics['action_chunk'], float64_array(chunk, [('horizon', 4, 28), ('action', 7, 7)]),
                           tk - 200)
        rec.on_message(topics['executed_action'],
                       joint_state(waypoints[k + 1], tk, frame_id='human' if human else 'policy'), tk)
    rec.on_message(topics['event'], string(outcome), t0 + (steps + 1) * dt)
    ep_id = rec._counter and rec.last_episode
    rec.close()
    from .dataset import list_episodes
    infos = [i for i in list_episodes(root) if i.start_time == t0 / 1e9]
    if not infos:
        raise RuntimeError(f'synthetic episode was not written under {root}: {rec.error or ep_id}')
    return infos[0]
