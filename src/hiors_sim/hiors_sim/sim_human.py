"""The simulated human (no ROS): runs episodes, takes over from the policy, labels outcomes.

Modes:
- 'demo': the expert drives every step (demonstrations; intervention flag on throughout);
- 'intervene': the policy drives; the human takes over when the policy's command drifts from
  the expert's plan or the task stalls, keeps control until the expert has made progress (a
  new phase) for at least `min_takeover_s`, then hands back — several times per episode;
- 'label_only': never takes over (evaluation of the policy alone).
Outcome: success when the sim reports the peg inserted; failure on timeout or a knocked-over peg.
"""
from dataclasses import dataclass

import numpy as np

from .expert import ScriptedExpert
from .scene import HOME_Q, PEG_HALF_HEIGHT

PHASE_ORDER = {'start': 0, 'retreat': 1, 'approach': 1, 'descend': 2, 'close': 3, 'lift': 4,
               'carry': 5, 'insert': 6, 'fallen': -1}


@dataclass
class SimHumanConfig:
    mode: str = 'intervene'
    episode_timeout_s: float = 30.0
    num_episodes: int = 0                 # 0 = forever
    drift_threshold_m: float = 0.04       # policy tcp target vs expert tcp target
    drift_time_s: float = 0.5             # drift this long -> take over
    stall_time_s: float = 4.0             # no phase progress and little motion this long -> take over
    min_takeover_s: float = 1.5
    max_takeover_s: float = 8.0
    # A person sees where the arm is heading: the "about to hit the peg" check also runs on the
    # policy's command extrapolated this many ticks ahead (its last step repeated). Through the
    # ROS graph commands reach the arm 1-3 ticks after the decision; 0 = judge the command alone.
    lookahead_ticks: int = 0
    # A person also sees a held peg being lowered onto the fixture beside the hole and takes over
    # (the expert then lifts, re-aligns and retries): peg bottom within `misaligned_height_m` of
    # the fixture top, more than `misaligned_m` off the hole axis, the policy still going down.
    misaligned_m: float = 0.005
    misaligned_height_m: float = 0.015
    success_hold_s: float = 0.3
    settle_s: float = 0.5                 # after a reset, before 'start'
    homing_timeout_s: float = 4.0         # after an episode, arm home before the reset


class SimHuman:
    def __init__(self, config: SimHumanConfig, expert: ScriptedExpert | None = None):
        if config.mode not in ('demo', 'intervene', 'label_only'):
            raise ValueError(f"mode must be 'demo', 'intervene' or 'label_only', not {config.mode!r}")
        self.cfg = config
        self.expert = expert or ScriptedExpert()
        self.state = 'need_reset'             # need_reset -> settling -> running -> need_reset / done
        self.episodes_done = 0
        self.episode_limit = config.num_episodes    # 0 = forever
        self.outcomes: list[str] = []
        self.in_control = False
        self.takeovers = 0
        self._t_state = 0.0
        self._drift_since = None
        self._progress_t = 0.0
        self._best_phase = 0
        self._takeover_t = 0.0
        self._takeover_phase = 0
        self._success_since = None
        self._last_tcp = None
        self._released = False
        self._prev_policy_command = None

    def run_one_more(self):
        """Run exactly one more episode from here (reset, run, label, home), then stop: for a
        driver that steps episodes one at a time."""
        self.episode_limit = self.episodes_done + 1
        self.state = 'need_reset'

    def retry_reset(self):
        """The reset could not be requested (no sim yet): ask again on the next tick."""
        self.state = 'need_reset'

    # Events returned by tick(): dict(command=array|None, intervention=bool, events=[...], reset=bool)
    def reset_done(self, now: float):
        self.state = 'settling'
        self._t_state = now
        self._released = False

    def tick(self, now: float, q, task, success: bool, policy_command) -> dict:
        out = {'command': None, 'intervention': self.in_control, 'events': [], 'reset': False}
        if self.state == 'done':
            out['intervention'] = self.in_control = False
            return out
        if self.state == 'homing':
            # Bring the arm home through the mux *before* the reset, so the mux's last target is
            # the pose the reset puts the arm in (no sweep back through the new scene).
            out['intervention'] = self.in_control = True
            out['command'] = np.array(HOME_Q, float)
            at_home = q is not None and np.max(np.abs(np.asarray(q)[:6] - HOME_Q[:6])) < 0.05
            if at_home or now - self._t_state > self.cfg.homing_timeout_s:
                self.state = 'need_reset'
            return out
        if self.state in ('need_reset', 'resetting', 'settling') and not self._released:
            # Between episodes the human has the arm and commands the home pose the reset puts it
            # in: neither the policy's last plan nor a stale hold target can swing it into the
            # freshly placed peg.
            self.in_control = True
            out['intervention'] = True
            out['command'] = np.array(HOME_Q, float)
        if self.state == 'need_reset':
            if self.episode_limit and self.episodes_done >= self.episode_limit:
                self.state = 'done'
                out['command'] = None
                out['intervention'] = self.in_control = False
                return out
            self.state = 'resetting'
            out['reset'] = True
            return out
        if self.state == 'resetting':
            return out
        if self.state == 'settling':
            if now - self._t_state >= self.cfg.settle_s and q is not None and task is not None:
                if self.cfg.mode != 'demo' and not self._released:
                    # Let go one tick before 'start', so the episode begins under the policy
                    # (the recorder latches the intervention state at the start).
                    self._released = True
                    out['intervention'] = self.in_control = False
                    out['command'] = None
                    return out
                self._start(now)
                out['events'].append('start')
                out['intervention'] = self.in_control
                if not self.in_control:
                    out['command'] = None
            return out
        # running
        if q is None or task is None:
            return out
        expert_cmd = self.expert.act(q, task['peg_pos'], task['peg_quat'], task['hole_pos'], task['hole_quat'])
        phase = PHASE_ORDER.get(self.expert.phase, 0)
        if phase > self._best_phase:
            self._best_phase, self._progress_t = phase, now
        tcp = self.expert.kin.fk(q[:6])[0]
        if self._last_tcp is not None and np.linalg.norm(tcp - self._last_tcp) > 0.01:
            self._progress_t = max(self._progress_t, now - self.cfg.stall_time_s / 2)
        self._last_tcp = tcp

        outcome = None
        if success:
            self._success_since = now if self._success_since is None else self._success_since
            if now - self._success_since >= self.cfg.success_hold_s:
                outcome = 'success'
        else:
            self._success_since = None
        if outcome is None and self.expert.phase == 'fallen':
            outcome = 'failure'
        if outcome is None and now - self._t_state >= self.cfg.episode_timeout_s:
            outcome = 'failure'
        if outcome is not None:
            return self._end(out, outcome, now)

        if self.cfg.mode == 'intervene':
            self._decide_takeover(now, q, expert_cmd, policy_command, phase, task)
        if self.in_control:
            out['command'] = expert_cmd
        out['intervention'] = self.in_control
        return out

    def _decide_takeover(self, now, q, expert_cmd, policy_command, phase, task):
        if self.in_control:
            if self.expert.phase in ('lift', 'carry', 'insert'):
                return          # the peg is in hand: the person finishes the delicate part
            held = now - self._takeover_t
            progressed = phase > self._takeover_phase
            if held >= self.cfg.max_takeover_s or (held >= self.cfg.min_takeover_s and progressed):
                self.in_control = False
                self._drift_since = None
                self._progress_t = now
            return
        drift = True
        if policy_command is not None:
            pol = np.asarray(policy_command, float)
            if pol.shape == (7,) and np.all(np.isfinite(pol)):
                d = np.linalg.norm(self.expert.kin.fk(pol[:6])[0] - self.expert.kin.fk(expert_cmd[:6])[0])
                grip_disagree = abs(pol[6] - expert_cmd[6]) > 0.015
                drift = d > self.cfg.drift_threshold_m or grip_disagree
        if drift:
            self._drift_since = now if self._drift_since is None else self._drift_since
        else:
            self._drift_since = None
        stalled = now - self._progress_t >= self.cfg.stall_time_s
        danger = policy_command is not None and any(
            self._heading_into_peg(c, task) for c in self._anticipated(policy_command))
        if danger or stalled or (self._drift_since is not None
                                 and now - self._drift_since >= self.cfg.drift_time_s):
            self.in_control = True
            self.takeovers += 1
            self._takeover_t = now
            self._takeover_phase = phase
            self._prev_policy_command = None     # motion is judged afresh after a hand-back

    def _anticipated(self, policy_command) -> list:
        """The policy's command and, with lookahead, where its current motion leads."""
        pol = np.asarray(policy_command, float)
        prev, self._prev_policy_command = self._prev_policy_command, pol
        out = [pol]
        if self.cfg.lookahead_ticks and prev is not None and prev.shape == pol.shape:
            out.append(pol + self.cfg.lookahead_ticks * (pol - prev))
        return out

    def _heading_into_peg(self, policy_command, task) -> bool:
        """A person grabs control at once when the arm is about to hit the standing peg: the
        commanded fingertips low and near the peg while the expert is not grasping it."""
        pol = np.asarray(policy_command, float)
        if pol.shape != (7,) or not np.all(np.isfinite(pol)):
            return False
        if self.expert.phase in ('lift', 'carry', 'insert'):
            if pol[6] > 0.02:
                return True                   # about to drop the peg it holds
            return self._lowering_beside_hole(self.expert.kin.fk(pol[:6])[0], task)
        if self.expert.phase in ('descend', 'close'):
            return False
        tcp = self.expert.kin.fk(pol[:6])[0]
        rel = tcp - task['peg_pos']
        return bool(np.linalg.norm(rel[:2]) < 0.07 and rel[2] < 0.09)

    def _lowering_beside_hole(self, commanded_tcp, task) -> bool:
        peg, hole = np.asarray(task['peg_pos'], float), np.asarray(task['hole_pos'], float)
        peg_bottom = peg[2] - PEG_HALF_HEIGHT
        lateral = np.linalg.norm(peg[:2] - hole[:2])
        going_down = self._last_tcp is not None and commanded_tcp[2] < self._last_tcp[2] - 1e-3
        return bool(going_down and lateral > self.cfg.misaligned_m
                    and peg_bottom < hole[2] + self.cfg.misaligned_height_m)

    def _start(self, now):
        self.state = 'running'
        self._t_state = now
        self.expert.reset()
        self.in_control = self.cfg.mode == 'demo'
        self.takeovers = 0
        self._drift_since = None
        self._progress_t = now
        self._best_phase = 0
        self._success_since = None
        self._last_tcp = None
        self._prev_policy_command = None

    def _end(self, out, outcome, now):
        self.episodes_done += 1
        self.outcomes.append(outcome)
        self.in_control = True               # hold until the next episode starts
        out['events'].append(outcome)
        out['intervention'] = True
        out['command'] = None
        self.state = 'homing'
        self._t_state = now
        return out
