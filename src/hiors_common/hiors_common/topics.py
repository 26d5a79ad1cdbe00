"""Every ROS topic / service name and QoS profile the nodes share, defined once (docs/INTERFACES.md
documents them). Names are defaults: a node's config field or a remapping can change them.
No ROS at import (the ROS-agnostic cores use the names): the QoS factories import rclpy when
called, and return a new profile each time (a caller may change its copy)."""

# --- robot and sim ---------------------------------------------------------------------------
# sensor_msgs/JointState: the robot's joint positions (sim -> everyone).
JOINT_STATES = '/joint_states'
# sensor_msgs/Image rgb8 of one camera (sim -> policy, recorder); filled by camera_topic(name).
CAMERA_TOPIC_FORMAT = '/camera/{name}/image_raw'
# std_msgs/Float64MultiArray (7): the robot command, ros2_control forward_position_controller form
# (mux -> robot; the bringup remaps it for a real arm).
ROBOT_COMMAND = '/forward_position_controller/commands'
# trajectory_msgs/JointTrajectory: the sim's alternative command input.
JOINT_TRAJECTORY = '/joint_trajectory_controller/joint_trajectory'
# std_msgs/Bool: peg inserted (sim -> sim human).
SIM_SUCCESS = '/hiors/sim/success'
# geometry_msgs/PoseArray, privileged: poses[0] = peg, poses[1] = hole (sim -> sim human).
SIM_TASK_STATE = '/hiors/sim/task_state'
# std_srvs/Trigger: re-randomise the task, arm to home (sim human / devices / mux -> sim).
SIM_RESET_SERVICE = '/hiors/sim/reset'

# --- commands and the mux --------------------------------------------------------------------
# std_msgs/Float64MultiArray (7 absolute joint targets) from the policy to the mux.
POLICY_COMMAND = '/hiors/policy/command'
# std_msgs/Float64MultiArray (7) from any teleop device / the simulated human to the mux.
TELEOP_COMMAND = '/hiors/teleop/command'
# std_msgs/Bool: true while a human has control (teleop -> mux, policy, recorder).
INTERVENTION = '/hiors/intervention'
# sensor_msgs/JointState: what the mux sent; header.frame_id = policy | human | hold (-> recorder).
EXECUTED_ACTION = '/hiors/executed_action'
# std_msgs/Bool: true = hold position (anyone -> mux, every teleop device).
ESTOP = '/hiors/estop'
# std_msgs/Bool: the device holding the takeover lost its input, hold at once (device -> mux).
TELEOP_STALE = '/hiors/teleop/stale'
# std_msgs/String JSON: the mux's state, on change and at 1 Hz.
MUX_STATUS = '/hiors/mux/status'
# std_srvs/SetBool: engage / clear the e-stop (the mux re-publishes it on ESTOP).
SET_ESTOP_SERVICE = '/hiors/set_estop'
# std_srvs/Trigger: re-arm after an e-stop was cleared.
RESUME_SERVICE = '/hiors/resume'

# --- episodes --------------------------------------------------------------------------------
# std_msgs/String: start | success | failure | abort (teleop / sim human -> recorder, trainer).
EPISODE_EVENT = '/hiors/episode/event'
# std_srvs/Trigger services <prefix>/{start,success,failure,abort,reset}, hosted by the mux.
EPISODE_SERVICE_PREFIX = '/hiors/episode'

# --- policy and trainer ----------------------------------------------------------------------
# visualization_msgs/MarkerArray: the planned chunk's gripper-tip path (policy -> RViz).
ACTION_CHUNK_MARKERS = '/hiors/policy/action_chunk'
# std_msgs/Float64MultiArray [horizon, action]: the unnormalised chunk (policy -> recorder).
ACTION_CHUNK_RAW = '/hiors/policy/action_chunk_raw'
# std_msgs/String: the active checkpoint version, latched (policy -> recorder, dashboard).
POLICY_VERSION = '/hiors/policy/version'
# std_msgs/String JSON: the signed checkpoint manifest, latched (trainer -> policy).
CHECKPOINT = '/hiors/checkpoint'

# --- other -----------------------------------------------------------------------------------
# diagnostic_msgs/DiagnosticArray from every node (hiors_common.diagnostics).
DIAGNOSTICS = '/diagnostics'
# sensor_msgs/Joy: the ROS joy driver's output (-> joy teleop).
JOY = '/joy'

# Queue depth of event-like streams (episode events, intervention, executed actions): deep enough
# that a burst is never dropped while a subscriber is busy.
EVENT_DEPTH = 50


def camera_topic(name: str) -> str:
    """The image topic of camera `name`."""
    return CAMERA_TOPIC_FORMAT.format(name=name)


def episode_service(action: str) -> str:
    """The episode Trigger service of `action` (start, success, failure, abort, reset)."""
    return f'{EPISODE_SERVICE_PREFIX}/{action}'


def reliable_qos(depth: int = 10):
    """Reliable, volatile, keep last `depth`: commands, sensors, status (rclpy's default profile
    with its own depth; a reliable subscription matches reliable publishers only)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def best_effort_qos(depth: int = 10):
    """Best effort, volatile, keep last `depth` (matches every publisher; may lose messages)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


def event_qos():
    """Reliable, volatile, depth EVENT_DEPTH: episode events, intervention subscriptions, executed
    actions. Volatile matches both latched and plain publishers."""
    return reliable_qos(EVENT_DEPTH)


def latched_qos():
    """Reliable, transient-local, depth 1: a late subscriber still gets the last value (checkpoint
    manifest, policy version, published intervention). A transient-local subscription matches no
    volatile publisher: subscribe with event_qos() where a publisher may be volatile."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


__all__ = ['JOINT_STATES', 'CAMERA_TOPIC_FORMAT', 'ROBOT_COMMAND', 'JOINT_TRAJECTORY', 'SIM_SUCCESS',
           'SIM_TASK_STATE', 'SIM_RESET_SERVICE', 'POLICY_COMMAND', 'TELEOP_COMMAND', 'INTERVENTION',
           'EXECUTED_ACTION', 'ESTOP', 'TELEOP_STALE', 'MUX_STATUS', 'SET_ESTOP_SERVICE', 'RESUME_SERVICE',
           'EPISODE_EVENT', 'EPISODE_SERVICE_PREFIX', 'ACTION_CHUNK_MARKERS', 'ACTION_CHUNK_RAW',
           'POLICY_VERSION', 'CHECKPOINT', 'DIAGNOSTICS', 'JOY', 'EVENT_DEPTH', 'camera_topic',
           'episode_service', 'reliable_qos', 'best_effort_qos', 'event_qos', 'latched_qos']
