"""Peg-in-hole simulation core (no ROS): reset with a seed, step one control period with a
7-d joint position command, read joints, render cameras, report task state and success."""
from dataclasses import dataclass

import mujoco
import numpy as np

from .scene import (CHAMFER, GRIPPER_JOINT, HOLE_DEPTH, HOME_Q, JOINT_LIMITS, JOINT_NAMES, JOINT_VELOCITY_LIMITS,
                    PEG_HALF_HEIGHT, build_mjcf)


@dataclass
class SimConfig:
    control_rate_hz: float = 10.0
    clearance_m: float = 0.0015
    chamfer_m: float = CHAMFER         # lead-in chamfer on the hole's rim (0 = sharp edge)
    camera_width: int = 224
    camera_height: int = 224
    # Randomisation area (world x, y) of the peg and the hole fixture, and their yaw range.
    peg_x: tuple = (0.38, 0.50)
    peg_y: tuple = (-0.20, -0.06)
    hole_x: tuple = (0.38, 0.50)
    hole_y: tuple = (0.06, 0.20)
    yaw_range: float = 0.6
    success_depth_m: float = 0.02      # peg bottom this far below the fixture top counts as inserted


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _quat_yaw(q) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


class PegInsertionSim:
    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.model = mujoco.MjModel.from_xml_string(
            build_mjcf(self.config.clearance_m, self.config.camera_width, self.config.camera_height,
                       self.config.chamfer_m))
        self.data = mujoco.MjData(self.model)
        self.substeps = max(1, int(round(1.0 / (self.config.control_rate_hz * self.model.opt.timestep))))
        self.qadr = np.array([self.model.joint(j).qposadr[0] for j in JOINT_NAMES])
        self.mirror_adr = self.model.joint('gripper_mirror').qposadr[0]
        self.peg_adr = self.model.joint('peg_free').qposadr[0]
        self.hole_body = self.model.body('hole').id
        self.lower = np.array([lim[0] for lim in JOINT_LIMITS])
        self.upper = np.array([lim[1] for lim in JOINT_LIMITS])
        self._renderer = None
        self.max_step = np.array(JOINT_VELOCITY_LIMITS) / self.config.control_rate_hz
        self.target = np.array(HOME_Q, float)     # the commanded position target
        self.ctrl = np.array(HOME_Q, float)       # what the actuators track: the target, velocity-limited
        self.bad_commands = 0
        self.velocity_limited = 0                 # control ticks where the limit cut the motion
        # Command timing against the control ticks (a graph whose timers drift against the sim's
        # skips or repeats chunk actions): ticks that began with no new command since the last,
        # and commands replaced by a later one before any tick used them.
        self.ticks_without_command = 0
        self.overwritten_commands = 0
        self.ticks = 0
        self.reset(0)

    # --- episode -------------------------------------------------------------------------
    def reset(self, seed: int | None = None):
        rng = np.random.default_rng(seed)
        c = self.config
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self.qadr] = HOME_Q
        self.data.qpos[self.mirror_adr] = HOME_Q[-1]
        peg_xy = rng.uniform([c.peg_x[0], c.peg_y[0]], [c.peg_x[1], c.peg_y[1]])
        hole_xy = rng.uniform([c.hole_x[0], c.hole_y[0]], [c.hole_x[1], c.hole_y[1]])
        peg_yaw, hole_yaw = rng.uniform(-c.yaw_range, c.yaw_range, size=2)
        self.data.qpos[self.peg_adr:self.peg_adr + 3] = [peg_xy[0], peg_xy[1], PEG_HALF_HEIGHT + 0.0005]
        self.data.qpos[self.peg_adr + 3:self.peg_adr + 7] = _yaw_quat(peg_yaw)
        self.model.body_pos[self.hole_body] = [hole_xy[0], hole_xy[1], 0.0]
        self.model.body_quat[self.hole_body] = _yaw_quat(hole_yaw)
        self.target = np.array(HOME_Q, float)
        self.ctrl = self.target.copy()
        self.data.ctrl[:] = self.ctrl
        mujoco.mj_forward(self.model, self.data)
        self.ticks = 0
        self._commands_since_step = 0          # commands since the last tick (those before a reset: none)
        # Let the peg settle on the table.
        for _ in range(50):
            mujoco.mj_step(self.model, self.data)

    # --- control -------------------------------------------------------------------------
    def set_command(self, command) -> bool:
        """Set the joint position target (7). Non-finite or wrong-sized commands are ignored
        (the last valid target is held) and counted; values are clipped to joint limits, and
        the actuators approach the target no faster than JOINT_VELOCITY_LIMITS (a controller's job)."""
        cmd = np.asarray(command, dtype=float).reshape(-1)
        if cmd.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(cmd)):
            self.bad_commands += 1
            return False
        self.target = np.clip(cmd, self.lower, self.upper)
        self._commands_since_step += 1
        return True

    def step(self, command=None):
        """Advance one control period (1 / control_rate_hz)."""
        if command is not None:
            self.set_command(command)
        if self._commands_since_step == 0:
            self.ticks_without_command += 1
        self.overwritten_commands += max(0, self._commands_since_step - 1)
        self._commands_since_step = 0
        delta = self.target - self.ctrl
        if np.any(np.abs(delta) > self.max_step + 1e-12):
            self.velocity_limited += 1
        self.ctrl = self.ctrl + np.clip(delta, -self.max_step, self.max_step)
        self.data.ctrl[:] = self.ctrl
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self.ticks += 1

    @property
    def time(self) -> float:
        return float(self.data.time)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.qadr].astype(float).copy()

    def joint_velocities(self) -> np.ndarray:
        return np.array([self.data.qvel[self.model.joint(j).dofadr[0]] for j in JOINT_NAMES])

    # --- task ----------------------------------------------------------------------------
    def peg_pose(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.data.qpos[self.peg_adr:self.peg_adr + 7]
        return q[:3].copy(), q[3:7].copy()

    def hole_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Hole opening centre (top of the fixture) and fixture orientation."""
        pos = self.model.body_pos[self.hole_body].copy()
        pos[2] = HOLE_DEPTH
        return pos, self.model.body_quat[self.hole_body].copy()

    def task_state(self) -> dict:
        peg_pos, peg_quat = self.peg_pose()
        hole_pos, hole_quat = self.hole_pose()
        return {'peg_pos': peg_pos, 'peg_quat': peg_quat, 'hole_pos': hole_pos, 'hole_quat': hole_quat}

    def success(self) -> bool:
        peg_pos, _ = self.peg_pose()
        hole_pos, _ = self.hole_pose()
        peg_bottom = peg_pos[2] - PEG_HALF_HEIGHT
        lateral = np.linalg.norm(peg_pos[:2] - hole_pos[:2])
        return bool(lateral < 0.005 and peg_bottom < HOLE_DEPTH - self.config.success_depth_m)

    # --- cameras -------------------------------------------------------------------------
    def render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.config.camera_height, self.config.camera_width)
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


__all__ = ['PegInsertionSim', 'SimConfig', 'JOINT_NAMES', 'GRIPPER_JOINT', '_quat_yaw']
