"""Turns action chunks into one command per control tick (no ROS).

Varied frequency (Hi-ORS / pi0 practice): of each H-step chunk only the first k actions are
executed, then the next chunk takes over. The next inference is requested `lead` ticks before the
current chunk runs out, so the control loop never waits; a chunk predicted from the observation at
tick t0 is indexed by the current tick (the ticks spent in inference are skipped), and the switch
between chunks cross-fades over a few ticks so the command does not jump.
"""
import numpy as np


class ChunkExecutor:
    def __init__(self, n_action_steps: int = 20, lead_ticks: int = 2, blend_ticks: int = 3):
        if n_action_steps < 1:
            raise ValueError('n_action_steps must be >= 1')
        self.k = n_action_steps
        self.lead = max(1, min(lead_ticks, n_action_steps))
        self.blend = max(0, blend_ticks)
        self.rejected = 0
        self.reset()

    def reset(self):
        """Drop every chunk (e.g. after a human takeover): start again from fresh observations."""
        self.chunk = None            # (H, D) absolute joint targets
        self.chunk_t0 = 0            # tick of the observation the chunk was predicted from
        self.adopted_at = 0
        self.pending = None          # (chunk, t0) waiting to take over
        self.requested = False
        self.last_command = None
        self._blend_from = None

    def needs_request(self, tick: int) -> bool:
        if self.requested or self.pending is not None:
            return False
        if self.chunk is None:
            return True
        return tick - self.adopted_at >= self.k - self.lead

    def mark_requested(self):
        self.requested = True

    def submit(self, chunk, obs_tick: int) -> bool:
        """Offer a predicted chunk; a chunk with NaN/inf is rejected (the caller holds)."""
        self.requested = False
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2 or not np.all(np.isfinite(chunk)):
            self.rejected += 1
            return False
        self.pending = (chunk, obs_tick)
        return True

    def command(self, tick: int):
        """The command for this tick, or None when there is nothing valid to execute (hold)."""
        if self.pending is not None and (self.chunk is None or tick - self.adopted_at >= self.k
                                         or tick - self.chunk_t0 >= len(self.chunk)):
            self._blend_from = self.last_command
            self.chunk, self.chunk_t0 = self.pending
            self.pending = None
            self.adopted_at = tick
        if self.chunk is None:
            return None
        index = tick - self.chunk_t0
        if index >= len(self.chunk) or index < 0:
            return None
        cmd = self.chunk[index].copy()
        since = tick - self.adopted_at
        if self._blend_from is not None and since < self.blend:
            alpha = (since + 1) / (self.blend + 1)
            cmd = (1 - alpha) * self._blend_from + alpha * cmd
        self.last_command = cmd
        return cmd
