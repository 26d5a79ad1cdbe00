"""Turns action chunks into one command per control tick (no ROS).

Varied frequency (Hi-ORS / pi0 practice): of each H-step chunk only the first k actions are
executed, then the next chunk takes over. The next inference is requested `lead` ticks before the
current chunk runs out, so the control loop never waits; a chunk predicted from the observation at
tick t0 is indexed by the current tick (the ticks spent in inference are skipped), and the switch
between chunks cross-fades over a few ticks so the command does not jump.
"""
import numpy as np

# The policy node's defaults (PolicyNodeConfig), also the lock-step engine's (hiors.sync_loop):
# asking 2 ticks early covers inference on 2 cores (~55 ms of a 100 ms tick) plus the wait for the
# next tick, and gives the graph's measured camera frame -> command latency (p50 ~190 ms at 10 Hz).
DEFAULT_LEAD_TICKS = 2
DEFAULT_BLEND_TICKS = 3


class ChunkExecutor:
    def __init__(self, n_action_steps: int = 20, lead_ticks: int = DEFAULT_LEAD_TICKS,
                 blend_ticks: int = DEFAULT_BLEND_TICKS):
        if n_action_steps < 1:
            raise ValueError('n_action_steps must be >= 1')
        self.k = n_action_steps
        # 0 = ask when the chunk runs out and execute the new one from its first action: only
        # for a caller whose inference takes no ticks (the lock-step engine, hiors.sync_loop).
        self.lead = max(0, min(lead_ticks, n_action_steps))
        # A cross-fade longer than the stride would never finish: every command would stay a mix
        # lagging behind the newest chunk (k=2 with a 3-tick blend never reaches the plan).
        self.blend = max(0, min(blend_ticks, n_action_steps - 1))
        self.rejected = 0
        self.stale = 0
        self.min_obs_tick = None
        self.reset()

    def reset(self, tick: int | None = None):
        """Drop every chunk (e.g. after a human takeover): start again from fresh observations.

        With `tick`, a chunk still being computed from an observation older than `tick` is dropped
        when it arrives (inference may be in flight across a takeover)."""
        if tick is not None:
            self.min_obs_tick = tick
        self.chunk = None            # (H, D) absolute joint targets
        self.chunk_t0 = 0            # tick of the observation the chunk was predicted from
        self.adopted_at = 0
        self.pending = None          # (chunk, t0) waiting to take over
        self.requested = False
        self.last_command = None
        self._blend_from = None
        self._replan = False
        self._replan_requested = False

    def replan(self):
        """New weights are live: ask for a chunk now and let it take over as soon as it arrives
        (cross-faded), instead of finishing the current chunk's k actions."""
        self._replan = True

    def needs_request(self, tick: int) -> bool:
        if self.requested or self.pending is not None:
            return False
        if self.chunk is None or self._replan:
            return True
        return tick - self.adopted_at >= self.k - self.lead

    def mark_requested(self):
        self.requested = True
        self._replan_requested = self._replan
        self._replan = False

    def submit(self, chunk, obs_tick: int) -> bool:
        """Offer a predicted chunk. A chunk with NaN/inf (or None: inference failed) is rejected and
        the current chunk dropped too, so the caller holds position until a good chunk arrives.
        A chunk predicted before the last reset is silently dropped (counted in `stale`)."""
        self.requested = False
        if self.min_obs_tick is not None and obs_tick < self.min_obs_tick:
            self.stale += 1
            return True
        chunk = np.asarray(chunk if chunk is not None else np.nan, dtype=float)
        if chunk.ndim != 2 or chunk.shape[0] == 0 or not np.all(np.isfinite(chunk)):
            self.rejected += 1
            self.chunk, self.pending, self._blend_from = None, None, None
            return False
        self.pending = (chunk, obs_tick, self._replan_requested)
        self._replan_requested = False
        return True

    def command(self, tick: int):
        """The command for this tick, or None when there is nothing valid to execute (hold)."""
        if self.pending is not None and (self.chunk is None or self.pending[2]
                                         or tick - self.adopted_at >= self.k
                                         or tick - self.chunk_t0 >= len(self.chunk)):
            # Cross-fade only from a command of the same run (not from before a hold or reset).
            self._blend_from = self.last_command if self.chunk is not None else None
            self.chunk, self.chunk_t0, _ = self.pending
            self.pending = None
            self.adopted_at = tick
        if self.chunk is None:
            self.last_command = None
            return None
        index = tick - self.chunk_t0
        if index >= len(self.chunk) or index < 0:
            self.last_command = None
            return None
        cmd = self.chunk[index].copy()
        since = tick - self.adopted_at
        if self._blend_from is not None and since < self.blend:
            alpha = (since + 1) / (self.blend + 1)
            cmd = (1 - alpha) * self._blend_from + alpha * cmd
        self.last_command = cmd
        return cmd
