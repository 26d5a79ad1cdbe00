"""The bringup node graph: ONE description read by both `launch/bringup.launch.py` (ros2 launch,
where ROS 2 is installed) and the pip-only runner (`hiors launch bringup`).

A node is listed once with its package, executable (ros2 run name), module (python -m name),
parameter file from its own package, overrides and remappings; its restart policy comes from
the RESTART table below, and `should_restart` is the one rule both runners apply to it.
"""
from dataclasses import dataclass, field

from hiors_common.contracts import DEFAULT_PROMPT
from hiors_common.topics import ROBOT_COMMAND

# name: (default, description). Values arrive as strings (launch arguments / name:=value).
ARGUMENTS = {
    'robot': ('sim', "'sim' (embedded MuJoCo arm) or 'real' (a ros2_control arm via remappings)"),
    'command_topic': (ROBOT_COMMAND, 'robot command topic (Float64MultiArray) the mux publishes to'),
    'teleop': ('sim_human', "comma list of input devices: sim_human, joy, keyboard, spacemouse, "
                            "evdev, vr (or 'none'); joy = the ROS joy driver + joy_teleop under ros2 launch, "
                            "the pad read through evdev by `hiors launch`"),
    'sim_human_mode': ('intervene', "simulated human: 'demo' | 'intervene' | 'label_only'"),
    'num_episodes': ('0', 'episodes the simulated human runs before the launch ends (0 = forever)'),
    'episode_timeout_s': ('40.0', 'simulated episode time limit'),
    'policy': ('true', 'run the policy node'),
    'preset': ('tiny', "policy preset when no checkpoint is given: 'tiny', 'small', 'pi0'"),
    'checkpoint': ('', 'policy checkpoint (.safetensors) to start from'),
    'object_pose_estimator': ('', 'object-pose estimator (.safetensors) of a checkpoint trained with estimated '
                                  'peg/hole poses in its state: the policy and the trainer read it'),
    'prompt': (DEFAULT_PROMPT, 'task instruction: the policy conditions on it, the recorder stores it for training'),
    'trainer': ('true', 'run the Hi-ORS trainer node'),
    'trainer_method': ('hiors', "training method: 'hiors', 'bc', 'hg_dagger', ..."),
    'recorder': ('true', 'record every episode as a rosbag2'),
    'episode_dir': ('~/.hiors/episodes', 'where episodes (bags + labels) are written'),
    'checkpoint_dir': ('~/.hiors/checkpoints', 'where the trainer writes checkpoints'),
    'control_rate_hz': ('10.0', 'policy-facing control rate'),
    'seed': ('0', 'simulation seed'),
    'task': ('peg_insert', "simulated task variant: 'peg_insert' (wide randomisation) or 'peg_insert_narrow'"),
    'dashboard': ('true', 'local web dashboard (success, interventions, trainer) on 127.0.0.1'),
    'dashboard_port': ('8088', 'dashboard port (0 = any free port, logged)'),
    'rviz': ('false', 'start RViz (only where ROS 2 is installed)'),
}


# What each restart policy means, for `ros2 launch` (bringup.launch.py: restarts through on_exit,
# never launch's own respawn, which also restarts after a clean exit) and the pip runner alike.
RESTART_POLICIES = {
    'always': 'restarted after any exit while the graph runs, clean (exit 0) or not',
    'on-failure': 'restarted only after a non-zero exit or death by a signal; a clean exit 0 stays down',
    'never': 'never restarted',
}
# node name -> restart policy: the ONE per-node table (NodeSpec.restart defaults to it). The
# robot-facing loop (sim, mux, policy, recorder, trainer) always comes back; the dashboard and the
# input devices only after a crash (one that exits 0 on its own ended on purpose).
RESTART = {
    'sim': 'always',
    'command_mux': 'always',
    'policy': 'always',
    'recorder': 'always',
    'trainer': 'always',
    'dashboard': 'on-failure',
    'sim_human': 'on-failure',
    'joy': 'on-failure',                 # the ROS joy driver (ros2 launch only)
    'joy_teleop': 'on-failure',
    'keyboard_teleop': 'on-failure',
    'spacemouse_teleop': 'on-failure',
    'evdev_teleop': 'on-failure',
    'vr_teleop': 'on-failure',
}
# Node (its own default name = the top-level key of its YAML) -> (python module, the config
# dataclass whose fields are its ROS parameters, 'module:Class'; hiors_common.params declares them,
# with the defaults and docs `hiors args <node>` prints).
NODE_CONFIGS = {
    'sim': ('hiors_sim.sim_node', 'hiors_sim.sim_node:SimNodeConfig'),
    'command_mux': ('hiors_teleop.command_mux_node', 'hiors_teleop.mux:MuxConfig'),
    'policy': ('hiors_policy.policy_node', 'hiors_policy.policy_node:PolicyNodeConfig'),
    'recorder': ('hiors_recorder.recorder_node', 'hiors_recorder.recorder:RecorderConfig'),
    'trainer': ('hiors_trainer.trainer_node', 'hiors_trainer.trainer_node:TrainerNodeConfig'),
    'dashboard': ('hiors.dashboard_node', 'hiors.dashboard_node:DashboardConfig'),
    'sim_human': ('hiors_sim.sim_human_node', 'hiors_sim.sim_human_node:SimHumanNodeConfig'),
    'joy_teleop': ('hiors_teleop.joy_teleop_node', 'hiors_teleop.joy_teleop_node:JoyTeleopConfig'),
    'keyboard_teleop': ('hiors_teleop.keyboard_teleop_node', 'hiors_teleop.keyboard_teleop_node:KeyboardTeleopConfig'),
    'spacemouse_teleop': ('hiors_teleop.spacemouse_teleop_node',
                          'hiors_teleop.spacemouse_teleop_node:SpaceMouseTeleopConfig'),
    'evdev_teleop': ('hiors_teleop.evdev_teleop_node', 'hiors_teleop.evdev_teleop_node:EvdevTeleopConfig'),
    'vr_teleop': ('hiors_teleop.vr_teleop_node', 'hiors_teleop.vr_teleop_node:VRTeleopConfig'),
}


def node_config_class(node: str):
    """The config dataclass of a NODE_CONFIGS node (imports its module)."""
    import importlib
    module, cls = NODE_CONFIGS[node][1].split(':')
    return getattr(importlib.import_module(module), cls)


RESTART_LIMIT = 20          # restarts per node before it is left down (and reported failed)
RESTART_DELAY_S = 1.0       # ros2 launch waits this long; the pip runner backs off on quick crash loops


def should_restart(policy: str, returncode: int) -> bool:
    """Whether a node with restart `policy` that exited with `returncode` (negative: killed by a
    signal, as subprocess and launch report it) is started again. `required` nodes never are:
    their exit ends the graph. Exits while the graph is stopping are not restarts either."""
    if policy not in RESTART_POLICIES:
        raise ValueError(f'unknown restart policy {policy!r}; known: {", ".join(RESTART_POLICIES)}')
    return policy == 'always' or (policy == 'on-failure' and returncode != 0)


@dataclass
class NodeSpec:
    name: str
    package: str
    executable: str
    module: str
    params_file: str = ''                 # file name in <package>/config/
    parameters: dict = field(default_factory=dict)
    remappings: list = field(default_factory=list)
    restart: str = ''                     # a RESTART_POLICIES key; '' = RESTART[name] ('on-failure' if absent)
    required: bool = False                # the whole graph stops when this node exits
    stop_timeout_s: float = 10.0          # after SIGINT, before the supervisor's SIGKILL

    def __post_init__(self):
        self.restart = self.restart or RESTART.get(self.name, 'on-failure')
        should_restart(self.restart, 0)       # a typo in a policy fails here, not at the first exit


def _bool(value: str) -> bool:
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on')


def resolve_arguments(overrides: dict | None = None) -> dict:
    args = {k: v[0] for k, v in ARGUMENTS.items()}
    for key, value in (overrides or {}).items():
        if '.' in key:
            continue          # <node>.<parameter>: a per-node parameter, see bringup_graph
        if key not in ARGUMENTS:
            raise KeyError(f'unknown bringup argument {key!r}; known: {", ".join(ARGUMENTS)}')
        args[key] = str(value)
    return args


def _yaml_value(text: str):
    import yaml
    return yaml.safe_load(text) if isinstance(text, str) else text


def bringup_graph(overrides: dict | None = None, ros_drivers: bool = False) -> list[NodeSpec]:
    """Node specs for the given arguments. Keys of the form `<node>.<parameter>` set one node's
    parameter directly (e.g. `trainer.checkpoint_every_steps:=20`), after the graph's own values.
    `ros_drivers`: the graph runs under `ros2 launch`, where ROS driver packages exist (teleop:=joy
    then starts the `joy` driver + joy_teleop); the pip runner has none (teleop:=joy reads the pad
    through evdev, same button map)."""
    nodes = _bringup_nodes(overrides, ros_drivers)
    by_name = {spec.name: spec for spec in nodes}
    for key, value in (overrides or {}).items():
        if '.' not in key:
            continue
        node, param = key.split('.', 1)
        if node not in by_name:
            raise KeyError(f'{key}: no node {node!r} in this graph (nodes: {", ".join(by_name)})')
        by_name[node].parameters[param] = _yaml_value(value)
    return nodes


def _bringup_nodes(overrides: dict | None, ros_drivers: bool = False) -> list[NodeSpec]:
    import os
    a = resolve_arguments(overrides)
    rate = float(a['control_rate_hz'])
    episode_dir = os.path.expanduser(a['episode_dir'])
    checkpoint_dir = os.path.expanduser(a['checkpoint_dir'])
    teleop = [t.strip() for t in a['teleop'].split(',') if t.strip() and t.strip() != 'none']
    nodes = []
    if a['robot'] == 'sim':
        nodes.append(NodeSpec('sim', 'hiors_sim', 'sim_node', 'hiors_sim.sim_node', 'sim.yaml',
                              {'control_rate_hz': rate, 'seed': int(a['seed']), 'task': a['task']},
                              remappings=[(ROBOT_COMMAND, a['command_topic'])]))
    elif a['robot'] != 'real':
        raise ValueError(f"robot must be 'sim' or 'real', not {a['robot']!r}")
    nodes.append(NodeSpec('command_mux', 'hiors_teleop', 'command_mux_node',
                          'hiors_teleop.command_mux_node', 'command_mux.yaml',
                          {'rate_hz': rate},
                          remappings=[(ROBOT_COMMAND, a['command_topic'])]))
    if _bool(a['policy']):
        params = {'control_rate_hz': rate, 'preset': a['preset'], 'prompt': a['prompt'],
                  # signed manifests may point only into the trainer's checkpoint directory
                  'checkpoint_dirs': [checkpoint_dir],
                  # the sim publishes one joint state per control tick: tick in step with it
                  **({'tick_source': 'joint_states'} if a['robot'] == 'sim' else {})}
        if a['checkpoint']:
            params['checkpoint'] = os.path.expanduser(a['checkpoint'])
        if a['object_pose_estimator']:
            params['object_pose_estimator'] = os.path.expanduser(a['object_pose_estimator'])
        nodes.append(NodeSpec('policy', 'hiors_policy', 'policy_node', 'hiors_policy.policy_node',
                              'policy.yaml', params))
    if _bool(a['recorder']):
        nodes.append(NodeSpec('recorder', 'hiors_recorder', 'recorder_node',
                              'hiors_recorder.recorder_node', 'recorder.yaml',
                              {'episode_dir': episode_dir, 'task': a['prompt']}))
    if _bool(a['trainer']):
        nodes.append(NodeSpec('trainer', 'hiors_trainer', 'trainer_node', 'hiors_trainer.trainer_node',
                              'trainer.yaml',
                              {'episode_dir': episode_dir, 'out_dir': checkpoint_dir,
                               'method': a['trainer_method'], 'policy_preset': a['preset'],
                               'rate_hz': rate,    # samples on the policy's control grid
                               **({'init_checkpoint': os.path.expanduser(a['checkpoint'])}
                                  if a['checkpoint'] else {}),
                               **({'object_pose_estimator': os.path.expanduser(a['object_pose_estimator'])}
                                  if a['object_pose_estimator'] else {})},
                              # A stop finishes the train step in flight (<= 30 s) and saves
                              # the steps since the last checkpoint: large models need time.
                              stop_timeout_s=120.0))
    if _bool(a['dashboard']):
        nodes.append(NodeSpec('dashboard', 'hiors', 'dashboard_node', 'hiors.dashboard_node', 'dashboard.yaml',
                              {'port': int(a['dashboard_port'])}))
    for device in teleop:
        if device == 'sim_human':
            if a['robot'] != 'sim':
                raise ValueError('the simulated human needs robot:=sim')
            num = int(a['num_episodes'])
            nodes.append(NodeSpec('sim_human', 'hiors_sim', 'sim_human_node', 'hiors_sim.sim_human_node',
                                  'sim_human.yaml',
                                  {'mode': a['sim_human_mode'], 'num_episodes': num,
                                   # episodes start only once the recorder hears the events
                                   'event_listeners': ['recorder'] if _bool(a['recorder']) else [''],
                                   'wait_for_policy': _bool(a['policy']) and a['sim_human_mode'] != 'demo',
                                   'episode_timeout_s': float(a['episode_timeout_s']),
                                   'seed': int(a['seed']), 'task': a['task']},
                                  required=num > 0))
        elif device == 'joy' and ros_drivers:
            nodes.append(NodeSpec('joy', 'joy', 'joy_node', '', '', {'autorepeat_rate': JOY_AUTOREPEAT_HZ}))
            nodes.append(NodeSpec('joy_teleop', 'hiors_teleop', 'joy_teleop_node', 'hiors_teleop.joy_teleop_node',
                                  'joy_teleop.yaml'))
        elif device in DEVICE_NODES:
            executable = DEVICE_NODES[device if device != 'joy' else 'evdev']
            # Named after its executable: the node's YAML is keyed by that name (a pad read through
            # evdev runs as evdev_teleop, with evdev_teleop.yaml).
            nodes.append(NodeSpec(executable.removesuffix('_node'), 'hiors_teleop', executable,
                                  f'hiors_teleop.{executable}', f'{executable.removesuffix("_node")}.yaml'))
        else:
            raise ValueError(f'unknown teleop device {device!r}; known: sim_human, {", ".join(DEVICE_NODES)}')
    return nodes


# The ROS joy driver's re-send rate: the joy teleop node measures its period and stops within a few.
JOY_AUTOREPEAT_HZ = 20.0
# teleop device -> executable (module hiors_teleop.<executable>); on the pip path 'joy' is read
# through evdev (no ROS joy driver there).
DEVICE_NODES = {
    'joy': 'joy_teleop_node',
    'keyboard': 'keyboard_teleop_node',
    'spacemouse': 'spacemouse_teleop_node',
    'evdev': 'evdev_teleop_node',
    'vr': 'vr_teleop_node',
}
