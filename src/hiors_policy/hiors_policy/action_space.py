"""The space the policy's state and actions live in (PolicyConfig.action_space).

'joint': absolute joint targets, the robot's own 7-d vector (6 arm joints + gripper).
'tool':  absolute tool-centre-point pose, as the official Hi-ORS code acts (end-effector poses):
         [x, y, z, yaw, tilt_x, tilt_y, gripper] in the world frame (m, rad; tilt = the x, y of
         the tool's z axis, 0 when it points straight down; yaw taken in [0, 2 pi) so a tool
         pointing down near yaw pi, the arm's home, does not wrap). A Cartesian target maps
         directly onto the object poses the cameras see, where a joint target must also learn
         the arm's kinematics; inverse kinematics turns each predicted chunk back into joint
         targets here, in one place, before the chunk executor and the command mux see it.

Only the first 7 columns of a state are the robot's; object poses appended after them
(hiors_policy.object_pose) pass through unchanged. Recorded episodes and the command topics
stay in joint space: the trainer encodes episodes as it loads them, the processor encodes
observations and decodes chunks.
"""
import numpy as np

from hiors_common.robot import ARM_JOINTS, JOINT_NAMES, load_arm_kinematics

ACTION_SPACES = ('joint', 'tool')
ROBOT_DIM = len(JOINT_NAMES)
ARM_DIM = len(ARM_JOINTS)
# A decoded chunk whose consecutive joint targets differ by more than this (rad) is an IK branch
# flip or a singularity, not a motion: the chunk is refused (the caller holds position).
MAX_IK_STEP_RAD = 0.5


class ToolSpace:
    """Joint rows <-> tool-pose rows of the same width (7)."""

    def __init__(self, kinematics=None):
        self.kin = kinematics if kinematics is not None else load_arm_kinematics("action_space 'tool'")
        from hiors_sim.kinematics import quat_from_tool_axes      # installed: the kinematics loaded
        self._orientation = quat_from_tool_axes

    def encode(self, rows) -> np.ndarray:
        """(..., >= 7) rows whose first 7 columns are joints -> the same rows with those columns as
        the tool pose (float32)."""
        a = np.array(rows, dtype=np.float64)
        flat = a.reshape(-1, a.shape[-1])
        if flat.shape[-1] < ROBOT_DIM:
            raise ValueError(f'tool space: rows need >= {ROBOT_DIM} columns, got {a.shape}')
        for row in flat:
            pos, mat = self.kin.fk_matrix(row[:ARM_DIM])
            yaw = np.mod(np.arctan2(mat[1, 0], mat[0, 0]), 2 * np.pi)
            row[:ROBOT_DIM] = (*pos, yaw, mat[0, 2], mat[1, 2], row[ARM_DIM])
        return flat.reshape(a.shape).astype(np.float32)

    def decode(self, chunk, q_now) -> np.ndarray:
        """(H, 7) tool-pose targets -> (H, 7) joint targets, each row solved from the previous
        one (the first from the measured joints `q_now`). A chunk that is not finite or whose
        solution jumps (MAX_IK_STEP_RAD) comes back all NaN, which the chunk executor refuses."""
        c = np.asarray(chunk, dtype=np.float64)
        out = np.full((c.shape[0], ROBOT_DIM), np.nan)
        if c.ndim != 2 or c.shape[1] < ROBOT_DIM or not np.all(np.isfinite(c)):
            return out
        q = np.asarray(q_now, dtype=np.float64)[:ARM_DIM]
        for i, (x, y, z, yaw, tilt_x, tilt_y, grip) in enumerate(c[:, :ROBOT_DIM]):
            nxt = self.kin.ik(np.array([x, y, z]), self._orientation(yaw, tilt_x, tilt_y), q)
            if not np.all(np.isfinite(nxt)) or np.max(np.abs(nxt - q)) > MAX_IK_STEP_RAD:
                return np.full((c.shape[0], ROBOT_DIM), np.nan)
            out[i, :ARM_DIM], out[i, ARM_DIM] = nxt, grip
            q = nxt
        return out


def make_space(name: str, kinematics=None):
    """None for 'joint' (nothing to convert), a ToolSpace for 'tool'."""
    if name not in ACTION_SPACES:
        raise ValueError(f'action_space must be one of {ACTION_SPACES}, got {name!r}')
    return ToolSpace(kinematics) if name == 'tool' else None
