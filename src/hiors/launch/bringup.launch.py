"""ros2 launch hiors bringup.launch.py [name:=value ...]

The node graph comes from hiors.graph (the same description the pip-only `hiors launch bringup`
runner uses), so the two never drift apart. Restarts follow graph.RESTART through
graph.should_restart, as in the pip runner: launch's own `respawn` would also restart an
'on-failure' node after a clean exit 0, so every node has respawn=False and an on_exit handler
that starts a fresh copy of it (an action runs once) when should_restart says so.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown, TimerAction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ament_index_python.packages import get_package_share_directory
from hiors.graph import ARGUMENTS, RESTART_DELAY_S, RESTART_LIMIT, bringup_graph, should_restart
from hiors_common.ros_env import use_local_ros_network


def _on_exit(spec, params, restarts):
    def on_exit(event, context):
        if spec.required:             # its end is the end of the graph (any exit code)
            return [Shutdown(reason=f'{spec.name} finished (exit {event.returncode})')]
        if context.is_shutdown or restarts >= RESTART_LIMIT or not should_restart(spec.restart, event.returncode):
            return None
        return [TimerAction(period=RESTART_DELAY_S, actions=[_node(spec, params, restarts + 1)])]
    return on_exit


def _node(spec, params, restarts=0):
    return Node(
        package=spec.package, executable=spec.executable, name=spec.name, output='screen',
        parameters=params, remappings=[r for r in spec.remappings if r[0] != r[1]],
        respawn=False, on_exit=_on_exit(spec, params, restarts),
        sigterm_timeout=str(spec.stop_timeout_s))     # SIGINT first, as the pip runner does


def _nodes(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    if values['robot'] == 'sim':
        use_local_ros_network()  # simulated bringup never talks beyond this machine
    actions = []
    for spec in bringup_graph(values, ros_drivers=True):
        params = []
        if spec.params_file:
            params.append(os.path.join(get_package_share_directory(spec.package), 'config',
                                       spec.params_file))
        params.append(spec.parameters)
        actions.append(_node(spec, params))
    if values['rviz'].lower() == 'true':
        share = get_package_share_directory('hiors')
        actions.append(Node(package='robot_state_publisher', executable='robot_state_publisher',
                            parameters=[{'robot_description': open(
                                os.path.join(share, 'config', 'arm.urdf')).read()}]))
        actions.append(Node(package='rviz2', executable='rviz2',
                            arguments=['-d', os.path.join(share, 'config', 'hiors.rviz')]))
    return actions


def generate_launch_description():
    args = [DeclareLaunchArgument(name, default_value=default, description=doc)
            for name, (default, doc) in ARGUMENTS.items()]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])
