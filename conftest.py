"""Every test process uses a loopback-only ROS network and a domain id of its own."""
import os

import pytest

from hiors_common.ros_env import domain_id_for, use_local_ros_network

use_local_ros_network(domain_id=domain_id_for(os.getpid()))
os.environ.setdefault('MUJOCO_GL', 'egl')


@pytest.fixture(scope='session')
def rclpy_context():
    import rclpy
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture
def test_node(rclpy_context, request):
    import rclpy
    node = rclpy.create_node('test_' + request.node.name.replace('[', '_').replace(']', '_')[:40].replace('-', '_'))
    yield node
    node.destroy_node()
