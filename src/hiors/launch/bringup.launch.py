"""ros2 launch hiors bringup.launch.py [name:=value ...]

The node graph comes from hiors.graph (the same description the pip-only `hiors launch bringup`
runner uses), so the two never drift apart.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ament_index_python.packages import get_package_share_directory
from hiors.graph import ARGUMENTS, bringup_graph
from hiors_common.ros_env import use_local_ros_network


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
        actions.append(Node(
            package=spec.package, executable=spec.executable, name=spec.name, output='screen',
            parameters=params, remappings=[r for r in spec.remappings if r[0] != r[1]],
            respawn=spec.restart != 'never', respawn_delay=1.0,
            sigterm_timeout=str(spec.stop_timeout_s),     # SIGINT first, as the pip runner does
            on_exit=Shutdown() if spec.required else None))
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
