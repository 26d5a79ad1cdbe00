"""Scripted, privileged expert for the peg-in-hole task: the simulated human.

It reads the arm joints and the true peg / hole poses each tick and decides what to do from that
state alone (plus a short grasp timer), so it can take over from any state a policy left:
approach the peg, grasp, lift, carry over the hole, align yaw, insert. Motions are Cartesian
steps of bounded length turned into joint targets by IK on the simulation's own model.
"""
from dataclasses import dataclass

import numpy as np

from .kinematics import ArmKinematics, quat_from_yaw_down, tool_yaw
from .scene import GRIPPER_CLOSED, GRIPPER_OPEN, HOLE_DEPTH, PEG_HALF, PEG_HALF_HEIGHT

QUARTER = np.pi / 2


def wrap_quarter(angle: float) -> float:
    """Square symmetry: the equivalent angle in [-pi/4, pi/4)."""
    return float((angle + np.pi / 4) % QUARTER - np.pi / 4)


def quat_yaw(q) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


@dataclass
class ExpertConfig:
    fast_step_m: float = 0.03          # Cartesian step per control tick in free space
    slow_step_m: float = 0.008         # near the peg / hole
    insert_step_m: float = 0.006
    grasp_offset_m: float = 0.045      # tcp above the peg centre when grasping
    clearance_z_m: float = 0.03        # peg bottom above the fixture top while carrying
    align_tol_m: float = 0.0015        # lateral error allowed before descending into the hole
    yaw_tol: float = 0.03
    close_ticks: int = 8
    # Approach to the grasp as a funnel: the hand's height above the grasp pose shrinks with its
    # lateral and yaw error (4 mm + slope x lateral beyond 4 mm + yaw term, capped at the 6 cm
    # approach height), so a hand a little off still comes down beside-but-above the peg and only
    # reaches the fingers' depth once centred. 0 = align at the approach height, then drop.
    funnel_slope: float = 0.0          # metres of height per metre of lateral error
    funnel_yaw_m_per_rad: float = 0.2  # metres of height per radian of yaw error beyond 0.05 rad


class ScriptedExpert:
    def __init__(self, config: ExpertConfig | None = None, kinematics: ArmKinematics | None = None):
        self.config = config or ExpertConfig()
        self.kin = kinematics or ArmKinematics()
        self.phase = 'start'
        self._closing = 0
        self._last_cmd = None

    def reset(self):
        self.phase = 'start'
        self._closing = 0
        self._last_cmd = None

    # --- state inference ------------------------------------------------------------------
    def holding(self, q, tcp, peg_pos) -> bool:
        """Fingers closed on the peg: opening about the peg width and the peg between them
        (tolerant, since the peg pose and the joints may come from slightly different times)."""
        rel = peg_pos - tcp
        opening = q[6]
        return bool(np.linalg.norm(rel[:2]) < 0.02 and -0.09 < rel[2] < 0.0
                    and PEG_HALF - 0.004 < opening < PEG_HALF + 0.003)

    @staticmethod
    def peg_upright(peg_quat, min_cos: float = 0.9) -> bool:
        """A peg that fell over cannot be inserted by this expert (it would need a regrasp)."""
        w, x, y, z = peg_quat
        return bool(1 - 2 * (x * x + y * y) > min_cos)   # world-z component of the peg axis

    # --- one tick ---------------------------------------------------------------------------
    def act(self, q, peg_pos, peg_quat, hole_pos, hole_quat) -> np.ndarray:
        """Next 7-d joint target (arm 6 + gripper) from the current state."""
        c = self.config
        q = np.asarray(q, float)
        peg_pos, hole_pos = np.asarray(peg_pos, float), np.asarray(hole_pos, float)
        tcp, tcp_quat = self.kin.fk(q[:6])
        yaw = tool_yaw(tcp_quat)
        # Plan from our own last target while the arm follows it: commands reach the robot a tick
        # or two late, and stepping from the measured pose would then overshoot and oscillate.
        # Decisions use the measured pose (`tcp`); motion steps start from `ref_tcp`.
        base_q, ref_tcp = q[:6], tcp
        if self._last_cmd is not None:
            ref, _ = self.kin.fk(self._last_cmd[:6])
            if np.linalg.norm(ref - tcp) < 0.03:
                base_q, ref_tcp = self._last_cmd[:6], ref
        peg_yaw, hole_yaw = quat_yaw(peg_quat), quat_yaw(hole_quat)
        gripper = GRIPPER_OPEN
        if not self.peg_upright(peg_quat):
            # Knocked over: back off above the table, gripper open; the human labels a failure.
            self.phase = 'fallen'
            goal = np.array([tcp[0], tcp[1], max(tcp[2], 0.2)])
            delta = np.clip(goal - tcp, -self.config.fast_step_m, self.config.fast_step_m)
            q_arm = self.kin.ik(tcp + delta, quat_from_yaw_down(yaw), q[:6])
            return np.concatenate([q_arm, [gripper]])

        if self.holding(q, tcp, peg_pos) and self._closing == 0:
            gripper = GRIPPER_CLOSED
            offset = tcp - peg_pos                       # where the peg sits in the hand
            lateral = hole_pos[:2] - peg_pos[:2]
            if np.linalg.norm(lateral) < 0.01:
                lateral = 0.5 * lateral    # measured error, delayed: half gain keeps it stable
            yaw_err = wrap_quarter(hole_yaw - peg_yaw)
            target_yaw = yaw + (0.5 * yaw_err if abs(yaw_err) < 0.1 else yaw_err)
            peg_bottom = peg_pos[2] - PEG_HALF_HEIGHT
            carry_z = HOLE_DEPTH + c.clearance_z_m + PEG_HALF_HEIGHT + offset[2]
            inserted_partly = peg_bottom < HOLE_DEPTH - 0.003 and np.linalg.norm(lateral) < 0.004
            if np.linalg.norm(lateral) > c.align_tol_m or abs(yaw_err) > c.yaw_tol:
                if peg_bottom < HOLE_DEPTH + 0.01 and not inserted_partly:
                    self.phase = 'lift'
                    goal = np.array([tcp[0], tcp[1], carry_z])
                    step = c.fast_step_m
                elif inserted_partly:
                    self.phase = 'insert'
                    goal = np.array([tcp[0] + lateral[0], tcp[1] + lateral[1], tcp[2] - c.insert_step_m])
                    step = c.insert_step_m
                else:
                    self.phase = 'carry'
                    goal = np.array([tcp[0] + lateral[0], tcp[1] + lateral[1], max(carry_z, tcp[2] - 0.02)])
                    step = c.fast_step_m if np.linalg.norm(lateral) > 0.02 else c.slow_step_m
            else:
                self.phase = 'insert'
                goal = np.array([tcp[0] + lateral[0], tcp[1] + lateral[1], tcp[2] - c.insert_step_m])
                step = c.insert_step_m
        else:
            # Grasp: choose the finger yaw equivalent to the peg's that is closest to the tool's.
            target_yaw = yaw + wrap_quarter(peg_yaw - yaw)
            grasp_z = peg_pos[2] + c.grasp_offset_m
            approach_z = grasp_z + 0.06
            lateral = peg_pos[:2] - tcp[:2]
            yaw_err = abs(wrap_quarter(peg_yaw - yaw))
            if c.funnel_slope > 0:
                lat = float(np.linalg.norm(lateral))
                approach_z = min(approach_z, grasp_z + 0.004 + c.funnel_slope * max(0.0, lat - 0.004)
                                 + c.funnel_yaw_m_per_rad * max(0.0, yaw_err - 0.05))
                hold_z = approach_z    # move straight along the funnel's wall
            else:
                hold_z = max(approach_z, min(tcp[2], approach_z + 0.1))   # level off at the approach height
            if self._closing > 0:
                self.phase = 'close'
                self._closing -= 1
                gripper = GRIPPER_CLOSED
                goal, step = np.array([peg_pos[0], peg_pos[1], grasp_z]), c.slow_step_m
            elif np.linalg.norm(lateral) > 0.004 or yaw_err > 0.05:
                if tcp[2] < approach_z - 0.01 and np.linalg.norm(lateral) > 0.01:
                    self.phase = 'retreat'
                    goal, step = np.array([tcp[0], tcp[1], approach_z + 0.02]), c.fast_step_m
                else:
                    self.phase = 'approach'
                    goal = np.array([peg_pos[0], peg_pos[1], hold_z])
                    step = c.fast_step_m if np.linalg.norm(lateral) > 0.02 else c.slow_step_m
            elif tcp[2] > grasp_z + 0.004:
                self.phase = 'descend'
                goal, step = np.array([peg_pos[0], peg_pos[1], grasp_z]), 0.015
            else:
                self.phase = 'close'
                self._closing = c.close_ticks
                gripper = GRIPPER_CLOSED
                goal, step = np.array([peg_pos[0], peg_pos[1], grasp_z]), c.slow_step_m
            if self.phase in ('approach', 'retreat') and q[6] < GRIPPER_OPEN - 0.01:
                gripper = GRIPPER_OPEN

        delta = goal - ref_tcp
        dist = np.linalg.norm(delta)
        if dist > step:
            delta *= step / dist
        q_arm = self.kin.ik(ref_tcp + delta, quat_from_yaw_down(target_yaw), base_q)
        self._last_cmd = np.concatenate([q_arm, [gripper]])
        return self._last_cmd.copy()


def run_expert(sim, seed: int, aim_offset_m: float = 0.0, max_ticks: int = 300) -> str:
    """One task instance driven by the expert alone, straight on a PegInsertionSim (no human, no
    rendering): 'success' | 'tipped' | 'stuck'. With `aim_offset_m` it aims that far beside the
    true hole (random direction per seed): a stand-in for a policy's placement error."""
    sim.reset(seed)
    expert = ScriptedExpert()
    ang = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    off = np.array([np.cos(ang), np.sin(ang), 0.0]) * aim_offset_m
    for _ in range(max_ticks):
        ts = sim.task_state()
        sim.step(expert.act(sim.joint_positions(), ts['peg_pos'], ts['peg_quat'], ts['hole_pos'] + off,
                            ts['hole_quat']))
        if sim.success():
            return 'success'
        if not ScriptedExpert.peg_upright(sim.peg_pose()[1]):
            return 'tipped'
    return 'stuck'
