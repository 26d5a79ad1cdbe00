"""One observation from one moment (no ROS): camera frames and the joint state paired by their
capture stamps (message headers), as the lock-step engine and the training data pair them.

Topics arrive independently: a 224x224 frame takes longer over DDS than a joint state, so "the
latest of each" mixes the robot's pose of one tick with the pictures of the tick before. While the
arm moves that is a few millimetres of disagreement between what the policy sees and the state it
is told, exactly where insertion has a 3 mm clearance. Here the frames are the newest set with one
stamp across every camera (else each camera's newest, e.g. unsynchronised real cameras), and the
joint state is the one recorded nearest that stamp (a real arm's states come at 100+ Hz).
"""
from collections import deque

import numpy as np


class ObservationSync:
    def __init__(self, cameras, state_history: int = 1000, frames_kept: int = 4):
        self.cameras = list(cameras)
        self.states = deque(maxlen=state_history)          # (stamp_ns, q)
        self.frames = {c: deque(maxlen=frames_kept) for c in self.cameras}   # cam -> (stamp_ns, image)

    def add_state(self, stamp_ns: int, q) -> None:
        self.states.append((int(stamp_ns), np.asarray(q, dtype=float)))

    def add_image(self, cam: str, stamp_ns: int, image) -> None:
        if cam in self.frames:
            self.frames[cam].append((int(stamp_ns), image))

    def has_frames_at(self, stamp_ns: int) -> bool:
        """Whether every camera has a frame captured at stamp_ns (or later)."""
        return all(self.frames[c] and self.frames[c][-1][0] >= stamp_ns for c in self.cameras)

    def observation(self):
        """(images by camera, joint state, capture stamp of the oldest frame, |state - frame| ns),
        or None before every camera and the joint state have been seen."""
        if not self.states or any(not self.frames[c] for c in self.cameras):
            return None
        common = set.intersection(*({s for s, _ in self.frames[c]} for c in self.cameras))
        if common:
            stamp = max(common)
            images = {c: next(img for s, img in reversed(self.frames[c]) if s == stamp) for c in self.cameras}
        else:
            images = {c: self.frames[c][-1][1] for c in self.cameras}
            stamp = min(self.frames[c][-1][0] for c in self.cameras)
        if stamp <= 0:                      # unstamped frames: nothing to pair by, use the newest state
            return images, self.states[-1][1].copy(), stamp, 0
        s_ns, q = min(self.states, key=lambda sq: abs(sq[0] - stamp))
        return images, q.copy(), stamp, abs(s_ns - stamp)
