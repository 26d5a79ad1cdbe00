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

from .expert import ExpertConfig, ScriptedExpert, quat_yaw, wrap_quarter
from .kinematics import tool_yaw
from .scene import FINGER_HALF_THICKNESS, FINGER_HALF_WIDTH, FINGERTIP_BEYOND_TCP, HOME_Q, PEG_HALF, PEG_HALF_HEIGHT

FINGER_MARGIN_M = 0.002     # a finger passing closer than this to the peg counts as hitting it
OFF_CENTRE_GRASP_M = 0.010  # fingers closing a peg half-width off its axis push it rather than grip it

IN_THE_HOLE_M = 0.005       # a peg bottom this far below the fixture top is in the hole, not on its rim


def capture_range_m(task: str) -> float:
    """How far off the hole axis a held peg lowered onto the fixture still slides in: the
    task's clearance plus the chamfer, less 1 mm (measured, BENCHMARKS.md grasp fragility)."""
    from .sim_core import SimConfig
    from .tasks import task_config
    cfg = SimConfig(**task_config(task))
    return cfg.clearance_m + cfg.chamfer_m - 0.001


PHASE_ORDER = {'start': 0, 'retreat': 1, 'approach': 1, 'descend': 2, 'close': 3, 'lift': 4,
               'carry': 5, 'insert': 6, 'fallen': -1}


@dataclass
class SimHumanConfig:
    mode: str = 'intervene'
    episode_timeout_s: float = 30.0       # an episode still running after this long (s) ends as a failure
    num_episodes: int = 0                 # 0 = forever
    drift_threshold_m: float = 0.04       # policy tcp target vs expert tcp target
    drift_time_s: float = 0.5             # drift this long -> take over
    stall_time_s: float = 4.0             # no phase progress and little motion this long -> take over
    # a takeover hands back once held this long (s) and the expert reached a new phase (never with
    # the peg in hand: lift, carry, insert)
    min_takeover_s: float = 1.5
    max_takeover_s: float = 8.0           # a takeover hands back after this long (s) even without progress
    # A person sees where the arm is heading: the "about to hit the peg" check also runs on the
    # policy's command extrapolated this many ticks ahead (its last step repeated). Through the
    # ROS graph commands reach the arm 1-3 ticks after the decision; 0 = judge the command alone.
    lookahead_ticks: int = 0
    # The task variant supervised (hiors_sim.tasks): its clearance and chamfer decide which
    # placements a person lets slide in.
    task: str = 'peg_insert'
    # A person also sees a held peg being lowered onto the fixture beside the hole and takes over
    # (the expert then lifts, re-aligns and retries): the policy's command takes or keeps the peg
    # bottom within `misaligned_height_m` of the fixture top (and not already down in the hole),
    # not lifting it, while more than `misaligned_m` off the hole axis and within
    # `fixture_reach_m` of it (over the fixture, not across the table). 0 = what the task's
    # clearance and chamfer catch, less 1 mm (bench_grasp_fragility: the expert aiming 6 mm off
    # inserts 19/20 on the narrow task, 3 + 4 mm): a takeover there would replace an insertion
    # that works with the expert's.
    misaligned_m: float = 0.0
    misaligned_height_m: float = 0.005    # misaligned-peg check: peg bottom less than this (m) above the fixture top
    fixture_reach_m: float = 0.05         # misaligned-peg check: peg less than this (m) off the hole axis
    # A person also sees a held peg, not yet in the hole, slide up between the fingers (the hand
    # pressing it onto the rim or the chamfer, the step before it pivots out) and takes over: the
    # peg has moved this far (m) up in the hand since it was lifted. 0 = off.
    slip_m: float = 0.0
    success_hold_s: float = 0.3           # the sim must report success this long (s) in a row to end as a success
    settle_s: float = 0.5                 # after a reset, before 'start'
    homing_timeout_s: float = 4.0         # after an episode, arm home before the reset
    # How the person brings the open hand down to the peg (ExpertConfig.funnel_slope): 0 = line
    # up 6 cm above it, then descend; > 0 = descend as the hand centres (a funnel).
    approach_funnel_slope: float = ExpertConfig.funnel_slope


class SimHuman:
    def __init__(self, config: SimHumanConfig, expert: ScriptedExpert | None = None):
        if config.mode not in ('demo', 'intervene', 'label_only'):
            raise ValueError(f"mode must be 'demo', 'intervene' or 'label_only', not {config.mode!r}")
        self.cfg = config
        self.misaligned_m = config.misaligned_m or capture_range_m(config.task)
        self.expert = expert or ScriptedExpert(ExpertConfig(funnel_slope=config.approach_funnel_slope))
        self.state = 'need_reset'             # need_reset -> settling -> running -> need_reset / done
        self.episodes_done = 0
        self.episode_limit = config.num_episodes    # 0 = forever
        self.outcomes: list[str] = []
        self.in_control = False
        self.takeovers = 0
        self.takeover_log: list[tuple[str, str]] = []   # this episode's (reason, expert phase) per takeover
        self._t_state = 0.0
        self._drift_since = None
        self._progress_t = 0.0
        self._best_phase = 0
        self._takeover_t = 0.0
        self._takeover_phase = 0
        self._success_since = None
        self._last_tcp = None
        self._grip_below, self._grip_slip = None, 0.0
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

    def hold_home(self) -> dict:
        """Between episodes (and while the start waits on the policy or the trainer) the human has
        the arm and commands the home pose the reset puts it in: neither the policy's last plan,
        a policy that has just come up, nor a stale hold target can swing it into the freshly
        placed peg. A tick()-style output."""
        self.in_control = True
        return {'command': np.array(HOME_Q, float), 'intervention': True, 'events': [], 'reset': False}

    def tick(self, now: float, q, task, success: bool, policy_command, commanded=None) -> dict:
        """One decision. `commanded`: the command last sent to the robot (the mux's executed
        action) where known; homing then ends once that is home (the reset puts the arm there),
        without waiting for the arm to get there too."""
        out = {'command': None, 'intervention': self.in_control, 'events': [], 'reset': False}
        if self.state == 'done':
            out['intervention'] = self.in_control = False
            return out
        if self.state == 'homing':
            # Bring the arm home through the mux *before* the reset, so the mux's last target is
            # the pose the reset puts the arm in (no sweep back through the new scene).
            out = self.hold_home()
            if commanded is not None:
                at_home = np.max(np.abs(np.asarray(commanded)[:6] - HOME_Q[:6])) < 0.01
            else:
                at_home = q is not None and np.max(np.abs(np.asarray(q)[:6] - HOME_Q[:6])) < 0.05
            if at_home or now - self._t_state > self.cfg.homing_timeout_s:
                self.state = 'need_reset'
            return out
        if self.state in ('need_reset', 'resetting', 'settling') and not self._released:
            out = self.hold_home()
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
        if self.cfg.slip_m > 0:
            self._track_grip(tcp, task)

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
        dangers = [] if policy_command is None else [self._danger(c, task, q[6])
                                                     for c in self._anticipated(policy_command)]
        danger = next((d for d in dangers if d), '')
        if not danger and self.cfg.slip_m > 0 and self._grip_slip > self.cfg.slip_m:
            danger = 'slipping'
        drifted = self._drift_since is not None and now - self._drift_since >= self.cfg.drift_time_s
        if danger or stalled or drifted:
            self.in_control = True
            self.takeovers += 1
            self.takeover_log.append((danger or ('stall' if stalled else 'drift'), self.expert.phase))
            self._takeover_t = now
            self._takeover_phase = phase
            self._prev_policy_command = None     # motion is judged afresh after a hand-back

    def _track_grip(self, tcp, task):
        """How far the held peg has slid up in the hand since it was lifted (m; 0 while no peg is
        held or once it is down in the hole, where pressing on is how an insertion ends)."""
        if self.expert.phase not in ('lift', 'carry', 'insert'):
            self._grip_below, self._grip_slip = None, 0.0
            return
        below = float(tcp[2] - task['peg_pos'][2])             # peg centre below the tcp
        if self._grip_below is None:
            self._grip_below = below
        in_hole = task['peg_pos'][2] - PEG_HALF_HEIGHT - task['hole_pos'][2] < -IN_THE_HOLE_M
        self._grip_slip = 0.0 if in_hole else self._grip_below - below

    def _anticipated(self, policy_command) -> list:
        """The policy's command and, with lookahead, where its current motion leads."""
        pol = np.asarray(policy_command, float)
        prev, self._prev_policy_command = self._prev_policy_command, pol
        out = [pol]
        if self.cfg.lookahead_ticks and prev is not None and prev.shape == pol.shape:
            out.append(pol + self.cfg.lookahead_ticks * (pol - prev))
        return out

    def _danger(self, policy_command, task, opening) -> str:
        """What a person grabs control for at once ('' = nothing): the arm about to hit the
        standing peg (commanded fingertips low and near it while the expert is not grasping),
        about to drop the held peg, or lowering it onto the fixture beside the hole. `opening`:
        the fingers' measured opening (closing them around an aligned peg is a grasp)."""
        pol = np.asarray(policy_command, float)
        if pol.shape != (7,) or not np.all(np.isfinite(pol)):
            return ''
        if self.expert.phase in ('lift', 'carry', 'insert'):
            if pol[6] > 0.02:
                return 'dropping'
            return 'misaligned' if self._peg_onto_rim_beside_hole(self.expert.kin.fk(pol[:6])[0], task) else ''
        if self.expert.phase in ('descend', 'close'):
            return ''
        tcp, tcp_quat = self.expert.kin.fk(pol[:6])
        rel = tcp - task['peg_pos']
        near_and_low = np.linalg.norm(rel[:2]) < 0.07 and rel[2] < 0.09
        closing = pol[6] < opening - 0.005
        return 'into_peg' if near_and_low and self._fingers_hit_peg(
            rel, tool_yaw(tcp_quat), quat_yaw(task['peg_quat']), opening, closing) else ''

    @staticmethod
    def _fingers_hit_peg(rel, yaw, peg_yaw, opening, closing) -> bool:
        """Would the fingers, brought low, come down on the peg, or close on it off-centre (and
        push it over)? Coming down around it ahead of the expert's plan is fine. `rel`: commanded
        tcp minus peg centre (world); tool x runs along the finger width, tool y is the closing
        axis (inner faces at +-`opening`); the square peg, turned by its yaw relative to the
        tool, reaches PEG_HALF * (|cos| + |sin|) along either axis. Fingertips already below
        the peg top straddle it: they can no longer come down on it, only be pushed into it
        sideways (no margin then) or close on it off-centre; closing within OFF_CENTRE_GRASP_M
        of its axis is a grasp (the pads centre the peg), even started above the expert's
        grasp height."""
        tool_x = np.array([np.cos(yaw), np.sin(yaw)])
        tool_y = np.array([np.sin(yaw), -np.cos(yaw)])
        dx, dy = abs(float(tool_x @ rel[:2])), abs(float(tool_y @ rel[:2]))
        turn = wrap_quarter(peg_yaw - yaw)
        reach = PEG_HALF * (abs(np.cos(turn)) + abs(np.sin(turn)))
        m = FINGER_MARGIN_M
        if rel[2] - FINGERTIP_BEYOND_TCP < PEG_HALF_HEIGHT:       # straddling
            if closing:
                return max(dx, dy) > OFF_CENTRE_GRASP_M
            m = 0.0
        on_a_finger = (dy + reach > opening - m and dy - reach < opening + 2 * FINGER_HALF_THICKNESS + m
                       and dx - reach < FINGER_HALF_WIDTH + m)
        return bool(on_a_finger or (closing and max(dx, dy) > OFF_CENTRE_GRASP_M))

    def _peg_onto_rim_beside_hole(self, commanded_tcp, task) -> bool:
        """The command brings or keeps the held peg's bottom within `misaligned_height_m` of the
        fixture top (or pressed onto it), not lifting it, with the peg (moved with the hand) off
        the hole by more than `misaligned_m` but over the fixture: it lands on, or slides about
        on, the rim instead of going in. A peg still converging onto the hole on its way down,
        or being lifted off the rim by the policy itself, is left alone."""
        if self._last_tcp is None:
            return False
        peg, hole = np.asarray(task['peg_pos'], float), np.asarray(task['hole_pos'], float)
        motion = np.asarray(commanded_tcp, float) - self._last_tcp
        peg_next = peg + motion
        lateral = np.linalg.norm(peg_next[:2] - hole[:2])
        bottom = peg_next[2] - PEG_HALF_HEIGHT - hole[2]          # above the fixture top
        return bool(motion[2] < 1e-3 and self.misaligned_m < lateral < self.cfg.fixture_reach_m
                    and -IN_THE_HOLE_M < bottom < self.cfg.misaligned_height_m)

    def _start(self, now):
        self.state = 'running'
        self._t_state = now
        self.expert.reset()
        self.in_control = self.cfg.mode == 'demo'
        self.takeovers = 0
        self.takeover_log = []
        self._drift_since = None
        self._progress_t = now
        self._best_phase = 0
        self._success_since = None
        self._last_tcp = None
        self._grip_below, self._grip_slip = None, 0.0
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
