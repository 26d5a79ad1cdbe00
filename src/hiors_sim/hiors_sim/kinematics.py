"""Arm forward/inverse kinematics on the simulation's own MJCF (MuJoCo kinematics and Jacobians).

IK is damped least squares on the `tcp` site's 6-D Jacobian (mj_jacSite): generic for any MJCF
arm, no per-robot formulas. Used by the scripted expert and by end-effector teleoperation.
"""
import mujoco
import numpy as np

from .scene import ARM_JOINTS, JOINT_LIMITS, build_mjcf


def quat_from_yaw_down(yaw: float) -> np.ndarray:
    """Tool pointing straight down (tool z = world -z), rotated by `yaw` about world z (wxyz)."""
    return quat_from_tool_axes(yaw)


def quat_from_tool_axes(yaw: float, tilt_x: float = 0.0, tilt_y: float = 0.0) -> np.ndarray:
    """Tool orientation (wxyz) whose z axis has world x, y components (tilt_x, tilt_y) and points
    down, and whose x axis heads at `yaw` about world z (projected square to the z axis)."""
    z = np.array([tilt_x, tilt_y, -np.sqrt(max(0.0, 1.0 - tilt_x ** 2 - tilt_y ** 2))])
    z /= np.linalg.norm(z)
    x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    x -= x.dot(z) * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x, y, z]).reshape(-1))
    return quat


def tool_yaw(quat_wxyz: np.ndarray) -> float:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat_wxyz, float))
    x = mat.reshape(3, 3)[:, 0]
    return float(np.arctan2(x[1], x[0]))


class ArmKinematics:
    def __init__(self, model: mujoco.MjModel | None = None, site: str = 'tcp'):
        self.model = model if model is not None else mujoco.MjModel.from_xml_string(build_mjcf())
        self.data = mujoco.MjData(self.model)
        self.site_id = self.model.site(site).id
        self.qadr = np.array([self.model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dadr = np.array([self.model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.lower = np.array([lim[0] for lim in JOINT_LIMITS[:6]])
        self.upper = np.array([lim[1] for lim in JOINT_LIMITS[:6]])

    def _set(self, q6):
        self.data.qpos[self.qadr] = q6
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def fk(self, q6) -> tuple[np.ndarray, np.ndarray]:
        """Tool-centre-point position (3,) and orientation quaternion (w, x, y, z)."""
        pos, mat = self.fk_matrix(q6)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, mat.reshape(-1))
        return pos, quat

    def fk_matrix(self, q6) -> tuple[np.ndarray, np.ndarray]:
        """Tool-centre-point position (3,) and rotation matrix (3, 3), columns = tool axes."""
        self._set(np.asarray(q6, float)[:6])
        return self.data.site_xpos[self.site_id].copy(), self.data.site_xmat[self.site_id].reshape(3, 3).copy()

    def ik(self, pos, quat_wxyz, q_init, iterations: int = 60, tol: float = 1e-4,
           damping: float = 1e-3, rot_weight: float = 0.3) -> np.ndarray:
        """Joint positions (6,) that put the tcp at `pos` with orientation `quat_wxyz`,
        starting from `q_init`; the best iterate is returned if the target is out of reach."""
        q = np.clip(np.asarray(q_init, float)[:6].copy(), self.lower, self.upper)
        target_pos = np.asarray(pos, float)
        target_quat = np.asarray(quat_wxyz, float)
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        cur_quat = np.zeros(4)
        rot_err = np.zeros(3)
        best, best_err = q.copy(), np.inf
        for _ in range(iterations):
            self._set(q)
            mujoco.mju_mat2Quat(cur_quat, self.data.site_xmat[self.site_id])
            pos_err = target_pos - self.data.site_xpos[self.site_id]
            mujoco.mju_subQuat(rot_err, target_quat, cur_quat)   # in the tcp frame
            rot_err_world = self.data.site_xmat[self.site_id].reshape(3, 3) @ rot_err
            err = np.concatenate([pos_err, rot_weight * rot_err_world])
            norm = np.linalg.norm(err)
            if norm < best_err:
                best, best_err = q.copy(), norm
            if norm < tol:
                break
            mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self.site_id)
            jac = np.vstack([jacp[:, self.dadr], rot_weight * jacr[:, self.dadr]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
            q = np.clip(q + dq, self.lower, self.upper)
        return best
