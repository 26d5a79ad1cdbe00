"""The robot description every package uses: joint names and order, position and velocity limits,
gripper values, home pose. The simulated arm's MJCF (hiors_sim.scene) is built to match it (a test
compiles the model and compares); a real arm overrides the mux's / nodes' parameters instead.
Angles in rad, the gripper in m of opening per finger."""
ARM_JOINTS = ('joint1', 'joint2', 'joint3', 'joint4', 'joint5', 'joint6')
GRIPPER_JOINT = 'gripper'
JOINT_NAMES = ARM_JOINTS + (GRIPPER_JOINT,)      # the order of every 7-d state / command vector
JOINT_LIMITS = ((-3.05, 3.05), (-2.0, 2.0), (-2.6, 2.6), (-3.05, 3.05), (-2.0, 2.0), (-3.05, 3.05),
                (0.0, 0.04))
POSITION_LOWER = tuple(lo for lo, _ in JOINT_LIMITS)
POSITION_UPPER = tuple(hi for _, hi in JOINT_LIMITS)
# Hardware velocity limits (rad/s; gripper m/s per finger), enforced by the sim as a controller
# would on every command input. Twice the command mux's operating limits (hiors_teleop.mux): normal
# operation through the mux never reaches them; a command that bypasses the mux cannot teleport.
JOINT_VELOCITY_LIMITS = (3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 0.4)
GRIPPER_OPEN = 0.035       # opening per finger when open (the joint's range goes to 0.04)
GRIPPER_CLOSED = 0.0
HOME_Q = (0.0, 0.5, 1.6, 0.0, 1.04, 0.0, GRIPPER_OPEN)   # arm above the workspace, tool pointing down


def load_arm_kinematics(purpose: str):
    """The robot's forward / inverse kinematics (hiors_sim.kinematics.ArmKinematics on the arm's
    MJCF), for the packages that work in tool poses (end-effector teleop, a tool-space policy);
    a clear error naming `purpose` where hiors_sim is not installed."""
    try:
        from hiors_sim.kinematics import ArmKinematics
    except ImportError as exc:
        raise RuntimeError(f'{purpose} needs hiors_sim.kinematics.ArmKinematics (the robot model): {exc}') from exc
    return ArmKinematics()
