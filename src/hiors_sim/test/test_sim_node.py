"""The sim node as a separate process over real DDS: joint states, both cameras, commands, reset;
and the simulated human driving it through the command mux."""
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from hiors_common.testing import NodeProcess, spin_until
from hiors_common.topics import (EPISODE_EVENT, INTERVENTION, JOINT_STATES, ROBOT_COMMAND, SIM_RESET_SERVICE,
                                 SIM_SUCCESS, camera_topic, latched_qos, reliable_qos)
from hiors_sim.scene import HOME_Q, JOINT_NAMES


@pytest.fixture
def sim_proc():
    proc = NodeProcess('hiors_sim.sim_node', ros_args=['-r', '__node:=sim', '-p', 'camera_width:=128',
                                                       '-p', 'camera_height:=96', '-p', 'seed:=3'])
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_sim_node_streams_and_obeys(sim_proc, test_node):
    joints, images, success = [], {'front': [], 'wrist': []}, []
    qos = reliable_qos(10)
    test_node.create_subscription(JointState, JOINT_STATES, joints.append, qos)
    for name in images:
        test_node.create_subscription(Image, camera_topic(name), images[name].append, 5)
    test_node.create_subscription(Bool, SIM_SUCCESS, success.append, qos)
    assert spin_until(test_node, lambda: len(joints) >= 5 and all(len(v) >= 3 for v in images.values()),
                      timeout=30), sim_proc.log()
    js = joints[-1]
    assert tuple(js.name) == JOINT_NAMES and js.header.stamp.sec > 0
    np.testing.assert_allclose(js.position, HOME_Q, atol=0.01)
    for name, msgs in images.items():
        img = msgs[-1]
        assert (img.width, img.height, img.encoding, img.step) == (128, 96, 'rgb8', 384)
        assert img.header.frame_id == name and img.header.stamp.sec > 0
        pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(96, 128, 3)
        assert pixels.std() > 5, f'{name} camera image is blank'
    assert success and not success[-1].data

    # Move the arm by a forward_position_controller command.
    pub = test_node.create_publisher(Float64MultiArray, ROBOT_COMMAND, 10)
    target = list(HOME_Q)
    target[0] = 0.4
    target[6] = 0.01
    def reached():
        pub.publish(Float64MultiArray(data=target))
        return abs(joints[-1].position[0] - 0.4) < 0.02 and joints[-1].position[6] < 0.015
    assert spin_until(test_node, reached, timeout=15), sim_proc.log()

    # Reset brings the arm home.
    client = test_node.create_client(Trigger, SIM_RESET_SERVICE)
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    assert spin_until(test_node, future.done, timeout=10)
    assert future.result().success and 'peg' in future.result().message
    assert spin_until(test_node, lambda: abs(joints[-1].position[0] - HOME_Q[0]) < 0.02, timeout=10)


def test_simulated_human_runs_demo_episodes_through_the_mux(test_node):
    events = []
    test_node.create_subscription(String, EPISODE_EVENT, lambda m: events.append(m.data), 10)
    procs = [NodeProcess('hiors_sim.sim_node', ros_args=['-r', '__node:=sim', '-p', 'render:=false']),
             NodeProcess('hiors_teleop.command_mux_node', ros_args=['-r', '__node:=command_mux']),
             NodeProcess('hiors_sim.sim_human_node', ros_args=['-r', '__node:=sim_human', '-p', 'mode:=demo',
                                                              '-p', 'num_episodes:=2',
                                                              '-p', f'event_listeners:=[{test_node.get_name()}]'])]
    for p in procs:
        p.start()
    try:
        ok = spin_until(test_node, lambda: events.count('success') + events.count('failure') >= 2, timeout=90)
        assert ok, procs[2].log()
        assert events == ['start', 'success', 'start', 'success'], procs[2].log()
        assert spin_until(test_node, lambda: not procs[2].alive(), timeout=10)   # exits when done
        assert procs[2].proc.returncode == 0
    finally:
        for p in procs:
            p.stop()


def test_simulated_human_waits_for_the_policy_before_the_first_episode(test_node):
    """With wait_for_policy the first episode starts only once the real policy node has loaded its
    model (its latched version), so no episode's clock runs while the arm waits for a policy; and
    meanwhile the human holds the arm (a policy that comes up before the start must not drive it:
    a graph run's first episode once began with the peg knocked over that way)."""
    events, intervention = [], []
    test_node.create_subscription(String, EPISODE_EVENT, lambda m: events.append(m.data), 10)
    test_node.create_subscription(Bool, INTERVENTION, lambda m: intervention.append(m.data), latched_qos())
    human = NodeProcess('hiors_sim.sim_human_node', ros_args=[
        '-r', '__node:=sim_human', '-p', 'mode:=label_only', '-p', 'num_episodes:=1', '-p', 'episode_timeout_s:=1.0',
        '-p', 'wait_for_policy:=true', '-p', f'event_listeners:=[{test_node.get_name()}]'])
    procs = [NodeProcess('hiors_sim.sim_node', ros_args=['-r', '__node:=sim', '-p', 'render:=false']),
             NodeProcess('hiors_teleop.command_mux_node', ros_args=['-r', '__node:=command_mux']), human]
    for p in procs:
        p.start()
    policy = NodeProcess('hiors_policy.policy_node', ros_args=['-r', '__node:=policy', '-p', 'preset:=tiny'])
    try:
        spin_until(test_node, lambda: False, timeout=6.0)
        assert events == [], human.log()                  # the sim is up, the policy is not: no episode
        assert 'waiting for the policy' in human.log()
        assert intervention and all(intervention), intervention     # the human has the arm
        policy.start()
        assert spin_until(test_node, lambda: 'start' in events, timeout=60), human.log() + policy.log()
    finally:
        for p in procs + [policy]:
            p.stop()
