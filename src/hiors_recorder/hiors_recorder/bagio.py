"""rosbag2 (MCAP) I/O for episodes, without ROS: write serialized CDR messages, summarise an
episode from its messages, and salvage the complete chunks of an MCAP file cut off by a crash.

Bags are written with rosbags' rosbag2 Writer (format version 9, MCAP storage), so they carry
metadata.yaml, message definitions and type hashes and are readable by `ros2 bag info` and rosbags.
"""
import io
import os
import struct
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_typestore

try:  # python >= 3.14
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the rosbags dependency
    from backports import zstd

_TYPESTORE = None


def typestore():
    """The ROS 2 kilted type store (standard message definitions, RIHS01 hashes)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def deserialize(raw, msgtype: str):
    return typestore().deserialize_cdr(bytes(raw) if isinstance(raw, memoryview) else raw, msgtype)


JOINT_STATE = 'sensor_msgs/msg/JointState'
IMAGE = 'sensor_msgs/msg/Image'
BOOL = 'std_msgs/msg/Bool'
STRING = 'std_msgs/msg/String'
FLOAT64_MULTI_ARRAY = 'std_msgs/msg/Float64MultiArray'


class EpisodeBagWriter:
    """One rosbag2 bag (MCAP) for one episode. Connections are added on first use of a topic.

    `flush()` closes the pending MCAP chunk and pushes it to the OS, so a killed process loses at
    most the messages since the last flush (the recorder calls it about once a second).
    """

    def __init__(self, path: str, compression: str = ''):
        self.path = path
        self._writer = Writer(Path(path), version=9, storage_plugin=StoragePlugin.MCAP)
        if compression == 'zstd':
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        elif compression:
            raise ValueError(f"compression must be '' or 'zstd', not {compression!r}")
        self._writer.open()
        self._connections = {}
        self.counts = {}

    def _connection(self, topic: str, msgtype: str):
        conn = self._connections.get(topic)
        if conn is None:
            ts = typestore()
            if msgtype not in ts.types:
                raise ValueError(f'unknown message type {msgtype!r} for topic {topic}')
            conn = self._writer.add_connection(topic, msgtype, typestore=ts)
            self._connections[topic] = conn
            self.counts[topic] = 0
        elif conn.msgtype != msgtype:
            raise ValueError(f'topic {topic} has type {conn.msgtype}, not {msgtype}')
        return conn

    def write(self, topic: str, msgtype: str, t_ns: int, raw) -> None:
        self._writer.write(self._connection(topic, msgtype), int(t_ns), raw)
        self.counts[topic] += 1

    def flush(self) -> None:
        storage = self._writer.storage
        if storage is None:
            return
        # rosbags buffers up to 1 MiB per MCAP chunk in memory; write it out now.
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()

    def close(self) -> None:
        """Finish the MCAP file (index, footer) and write metadata.yaml; fsync both."""
        self._writer.close()
        for name in os.listdir(self.path):
            fd = os.open(os.path.join(self.path, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def abort(self) -> None:
        """Stop writing without finishing the file (it stays visibly unfinished)."""
        try:
            self._writer.abort()
        except Exception:  # noqa: BLE001 - the storage may already be broken (disk full)
            pass


class EpisodeStats:
    """Episode summary computed from the recorded messages (live, or during recovery)."""

    def __init__(self, topics: dict, start_ns: int):
        # topics: role -> topic name for 'executed_action', 'intervention', 'policy_version'
        self.topics = topics
        self.start_ns = start_ns
        self.counts = {}
        self.steps = 0
        self.policy_versions = []
        self._spans = []                  # [start_ns, end_ns or None]
        self._flag = False
        self._flag_seen = False
        self._source_spans = []
        self._source_human = False
        self._last_action_ns = None
        self.last_ns = start_ns

    def add(self, topic: str, t_ns: int, raw) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.last_ns = max(self.last_ns, t_ns)
        if topic == self.topics.get('executed_action'):
            self.steps += 1
            self._last_action_ns = t_ns if self._last_action_ns is None else max(self._last_action_ns, t_ns)
            try:
                human = deserialize(raw, JOINT_STATE).header.frame_id == 'human'
            except Exception:  # noqa: BLE001 - a malformed message is still counted as a step
                human = False
            self._edge(self._source_spans, human, self._source_human, t_ns)
            self._source_human = human
        elif topic == self.topics.get('intervention'):
            try:
                flag = bool(deserialize(raw, BOOL).data)
            except Exception:  # noqa: BLE001
                return
            self._flag_seen = True
            self._edge(self._spans, flag, self._flag, t_ns)
            self._flag = flag
        elif topic == self.topics.get('policy_version'):
            try:
                version = deserialize(raw, STRING).data
            except Exception:  # noqa: BLE001
                return
            if version and (not self.policy_versions or self.policy_versions[-1] != version):
                self.policy_versions.append(version)

    @staticmethod
    def _edge(spans, value, previous, t_ns):
        if value and not previous:
            spans.append([t_ns, None])
        elif previous and not value and spans:
            spans[-1][1] = t_ns

    def intervention_spans(self, end_ns: int) -> list:
        """Spans of human control in seconds since the start: from the intervention flag when it
        was recorded, else from the executed-action source. A flag raised after the last executed
        action and still up at the end is the hold that follows the episode's label (the flag and
        the end event travel on different topics, so it can arrive first): no takeover."""
        spans = self._spans if self._flag_seen else self._source_spans
        out = []
        for a, b in spans:
            if b is None and (self._last_action_ns is None or a > self._last_action_ns):
                continue
            b = end_ns if b is None else b
            out.append([round((a - self.start_ns) / 1e9, 6), round((max(a, b) - self.start_ns) / 1e9, 6)])
        return out


# ---------------------------------------------------------------------------------------------
# Salvaging an MCAP file without footer (the recorder was killed mid-episode)

_MAGIC = b'\x89MCAP0\r\n'
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x03, 0x04, 0x05, 0x06


def _string(buf, pos):
    (n,) = struct.unpack_from('<I', buf, pos)
    pos += 4
    return bytes(buf[pos:pos + n]).decode(), pos + n


def _records(buf, pos=0, end=None):
    """Yield (op, body memoryview) for every complete record; stop at the first cut-off one."""
    end = len(buf) if end is None else end
    while pos + 9 <= end:
        op = buf[pos]
        (length,) = struct.unpack_from('<Q', buf, pos + 1)
        body_start = pos + 9
        if body_start + length > end:
            return
        yield op, buf[body_start:body_start + length]
        pos = body_start + length


def scan_partial_mcap(path: str):
    """Read every complete chunk of an MCAP file that may lack its summary and footer.

    Returns (schemas {id: (name, encoding, data)}, channels {id: (topic, schema_id, encoding)},
    messages [(channel_id, log_time_ns, bytes)]). Raises ValueError if the file is not MCAP.
    """
    with open(path, 'rb') as f:
        buf = memoryview(f.read())
    if bytes(buf[:8]) != _MAGIC:
        raise ValueError(f'{path}: not an MCAP file (bad magic)')
    schemas, channels, messages = {}, {}, []

    def handle(op, body):
        if op == _OP_SCHEMA:
            (sid,) = struct.unpack_from('<H', body, 0)
            name, pos = _string(body, 2)
            encoding, pos = _string(body, pos)
            (n,) = struct.unpack_from('<I', body, pos)
            schemas[sid] = (name, encoding, bytes(body[pos + 4:pos + 4 + n]).decode())
        elif op == _OP_CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, pos = _string(body, 4)
            encoding, pos = _string(body, pos)
            channels[cid] = (topic, sid, encoding)
        elif op == _OP_MESSAGE:
            cid, _seq, log_time, _pub = struct.unpack_from('<HIQQ', body, 0)
            messages.append((cid, log_time, bytes(body[22:])))

    for op, body in _records(buf, 8):
        if op == _OP_CHUNK:
            pos = 8 + 8 + 8 + 4
            compression, pos = _string(body, pos)
            (n,) = struct.unpack_from('<Q', body, pos)
            data = body[pos + 8:pos + 8 + n]
            if compression == 'zstd':
                data = memoryview(zstd.decompress(bytes(data)))
            elif compression:
                continue  # not written by this recorder
            for inner_op, inner in _records(data):
                handle(inner_op, inner)
        else:
            handle(op, body)
    messages.sort(key=lambda m: m[1])
    return schemas, channels, messages


def rewrite_messages(dst: str, schemas: dict, channels: dict, messages: list) -> dict:
    """Write salvaged messages into a new, complete bag at `dst`; returns per-topic counts."""
    writer = EpisodeBagWriter(dst)
    try:
        for cid, t_ns, data in messages:
            topic, sid, _enc = channels[cid]
            writer.write(topic, schemas[sid][0], t_ns, data)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return dict(writer.counts)


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8."""
    h, w, enc = int(msg.height), int(msg.width), msg.encoding.lower()
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, '8uc1': 1, '8uc3': 3}.get(enc)
    if channels is None:
        raise ValueError(f'unsupported image encoding {msg.encoding!r}')
    step = int(msg.step) or w * channels
    data = np.asarray(msg.data, dtype=np.uint8)
    if data.size < step * h:
        raise ValueError(f'image data too short: {data.size} < {step}*{h}')
    arr = data[:step * h].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if enc in ('bgr8', 'bgra8'):
        arr = arr[:, :, 2::-1]
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def read_bytes_head(path: str, n: int) -> bytes:
    with open(path, 'rb') as f:
        return f.read(n)


def mcap_is_complete(path: str) -> bool:
    """Cheap check: MCAP magic at both ends (a killed writer leaves no footer)."""
    try:
        size = os.path.getsize(path)
        if size < 16:
            return False
        with open(path, 'rb') as f:
            head = f.read(8)
            f.seek(-8, io.SEEK_END)
            tail = f.read(8)
        return head == _MAGIC and tail == _MAGIC
    except OSError:
        return False
