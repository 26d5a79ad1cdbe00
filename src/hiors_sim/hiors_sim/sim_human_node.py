"""ROS 2 adapter of the simulated human: expert commands on /hiors/teleop/command, takeover on
/hiors/intervention, episode events, sim resets. Exits when num_episodes are done."""
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from hiors_common.diagnostics import DiagnosticsPublisher, OK
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.topics import (DIAGNOSTICS, EPISODE_EVENT, EXECUTED_ACTION, INTERVENTION, JOINT_STATES,
                                 POLICY_COMMAND, POLICY_VERSION, SIM_RESET_SERVICE, SIM_SUCCESS, SIM_TASK_STATE,
                                 TELEOP_COMMAND, event_qos, latched_qos, reliable_qos)

from .scene import JOINT_NAMES
from .sim_human import SimHuman, SimHumanConfig


@dataclass
class SimHumanNodeConfig(SimHumanConfig):
    """The core SimHumanConfig's fields (each default and doc declared there, once; `mode` is
    re-declared only to document its choices) and the node's own."""
    mode: str = field(default=SimHumanConfig.mode, metadata={
        'doc': "'demo' (the expert drives every step), 'intervene' (the policy drives, the human takes "
               "over when it drifts or stalls) or 'label_only' (never takes over: evaluation)"})
    # the bringup's seed:= (as the sim's); unused here: the simulated human has no randomness, the
    # sim node seeds the scenes
    seed: int = 0
    # std_srvs/Trigger called before each episode: re-randomise the scene, arm home (the sim's;
    # default from hiors_common.topics)
    reset_service: str = SIM_RESET_SERVICE
    # Don't start an episode before these nodes subscribe to the episode events (the recorder),
    # or their 'start' would be lost to DDS discovery. Empty = don't wait.
    event_listeners: list[str] = field(default_factory=lambda: ['recorder'])
    # Don't start the first episode before the policy node has announced its loaded model (its
    # latched version): otherwise the first episode's clock runs while the arm is held (~5 s of
    # a 30-40 s time-out on 2 cores). Off for 'demo' and graphs without a policy node.
    wait_for_policy: bool = False
    # Before each episode, wait as a person resetting the scene would, until the trainer has
    # judged the last episode (its /diagnostics 'accepted' + 'rejected' grew) and, while it has
    # samples to train on ('training'), reports ('step') at least this many optimiser steps per
    # robot state this human has seen in the run's episodes so far. On a 2-core simulation the
    # trainer manages ~0.3 steps per frame in real time; this lets a short online phase train as
    # much per frame as the learning benchmark's core engine (--updates-per-frame). 0 = never
    # wait (a real robot).
    train_steps_per_frame: float = 0.0
    # ... but never longer than this (s) before one episode: a stalled trainer delays, not stops, the run
    train_wait_max_s: float = 60.0


class SimHumanNode(Node):
    def __init__(self):
        super().__init__('sim_human')
        self.cfg = declare_config(self, SimHumanNodeConfig)
        self.human = SimHuman(SimHumanConfig(**{f.name: getattr(self.cfg, f.name)
                                                 for f in dataclasses.fields(SimHumanConfig)}))
        self.q = None
        self.task = None
        self.q_stamp = self.task_stamp = None
        self.success = False
        self.policy_command = None
        self._policy_heard = False
        self.episode_frames = 0           # robot states seen while an episode ran (all episodes)
        self.trainer = {'step': 0, 'judged': 0, 'training': 0}   # from the trainer's /diagnostics
        self._judged_at_end = None        # the trainer's judged count when the last episode ended
        self._train_wait = None           # [episode index, since, warned] of the current wait
        qos = reliable_qos(10)
        self.create_subscription(JointState, JOINT_STATES, self._on_joints, qos)
        self.commanded = None             # the mux's last command (executed action): homing ends on it
        self.create_subscription(JointState, EXECUTED_ACTION, self._on_executed, event_qos())
        self.create_subscription(PoseArray, SIM_TASK_STATE, self._on_task, qos)
        self.create_subscription(Bool, SIM_SUCCESS, lambda m: setattr(self, 'success', m.data), qos)
        self.create_subscription(Float64MultiArray, POLICY_COMMAND, self._on_policy, 10)
        self.create_subscription(String, POLICY_VERSION, lambda _m: setattr(self, '_policy_heard', True),
                                 latched_qos())
        if self.cfg.train_steps_per_frame > 0:
            from hiors_trainer.telemetry import STATUS_NAME
            self._trainer_status = STATUS_NAME
            self.create_subscription(DiagnosticArray, DIAGNOSTICS, self._on_diagnostics, 10)
        self.pub_cmd = self.create_publisher(Float64MultiArray, TELEOP_COMMAND, 10)
        self.pub_intervention = self.create_publisher(Bool, INTERVENTION, latched_qos())
        self.pub_event = self.create_publisher(String, EPISODE_EVENT, reliable_qos(10))
        self.reset_client = self.create_client(Trigger, self.cfg.reset_service)
        self.diag = DiagnosticsPublisher(self, 'sim_human')
        self._reset_future = None
        self._last_intervention = None
        self._intervention_sent_t = 0.0
        # Without joint states (sim not up yet, or stopped) the episode logic still advances.
        self.create_timer(1.0, self._tick_if_idle)
        self._last_tick = 0.0
        self.get_logger().info(f'simulated human: mode={self.cfg.mode} episodes={self.cfg.num_episodes or "inf"}')

    @staticmethod
    def _positions(msg: JointState):
        """The arm's joints of a JointState in JOINT_NAMES order, or None if any is missing."""
        index = {n: i for i, n in enumerate(msg.name)}
        if all(n in index for n in JOINT_NAMES):
            return np.array([msg.position[index[n]] for n in JOINT_NAMES])
        return None

    def _on_joints(self, msg: JointState):
        q = self._positions(msg)
        if q is not None:
            self.q = q
            self.q_stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            self._tick_if_synced()

    def _on_executed(self, msg: JointState):
        commanded = self._positions(msg)
        if commanded is not None:
            self.commanded = commanded

    def _tick_if_synced(self):
        # One decision per robot state, made when the joints and the task state of the same sim
        # tick (same stamp) are both in: a loaded machine slows the human down with the sim
        # instead of letting it act on mismatched or stale state.
        if self.q is not None and self.task is not None and self.q_stamp == self.task_stamp:
            if self.human.state == 'running':
                self.episode_frames += 1
            self._tick()

    def _on_task(self, msg: PoseArray):
        if len(msg.poses) < 2:
            return
        def pq(p):
            return (np.array([p.position.x, p.position.y, p.position.z]),
                    np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]))
        (pp, pquat), (hp, hquat) = pq(msg.poses[0]), pq(msg.poses[1])
        self.task = {'peg_pos': pp, 'peg_quat': pquat, 'hole_pos': hp, 'hole_quat': hquat}
        self.task_stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self._tick_if_synced()

    def _on_policy(self, msg: Float64MultiArray):
        self.policy_command = np.array(msg.data)

    def _missing_listeners(self) -> list[str]:
        names = {info.node_name for info in self.get_subscriptions_info_by_topic(EPISODE_EVENT)}
        missing = [n for n in self.cfg.event_listeners if n and n not in names]
        if missing:
            self.get_logger().info(f'waiting for {missing} to subscribe to {EPISODE_EVENT}',
                                   throttle_duration_sec=5.0)
        return missing

    def _policy_not_ready(self) -> bool:
        if not self.cfg.wait_for_policy or self._policy_heard:
            return False
        self.get_logger().info(f'waiting for the policy to announce its model on {POLICY_VERSION}',
                               throttle_duration_sec=5.0)
        return True

    def _on_diagnostics(self, msg: DiagnosticArray):
        for status in msg.status:
            if status.name == self._trainer_status:
                v = {kv.key: kv.value for kv in status.values}
                try:
                    self.trainer = {'step': int(float(v['step'])), 'training': int(float(v['training'])),
                                    'judged': int(float(v['accepted'])) + int(float(v['rejected']))}
                except (KeyError, ValueError):
                    self.get_logger().warning(f'unreadable trainer status: {v}', throttle_duration_sec=30.0)

    def _trainer_behind(self, now: float) -> bool:
        if self.cfg.train_steps_per_frame <= 0:
            return False
        need = int(self.cfg.train_steps_per_frame * self.episode_frames)
        t = self.trainer
        judged = self._judged_at_end is None or t['judged'] > self._judged_at_end
        if judged and (not t['training'] or t['step'] >= need):
            return False                  # nothing to learn from yet, or trained enough
        if self._train_wait is None or self._train_wait[0] != self.human.episodes_done:
            self._train_wait = [self.human.episodes_done, now, False]    # episode, since, warned
        waited = now - self._train_wait[1]
        if waited > self.cfg.train_wait_max_s:
            if not self._train_wait[2]:
                self._train_wait[2] = True
                self.get_logger().warning(f'trainer at step {t["step"]} of {need} (judged the last episode: '
                                          f'{judged}) after {self.cfg.train_wait_max_s:.0f} s: starting the '
                                          f'episode anyway')
            return False
        self.get_logger().info(f'scene reset: waiting for the trainer (judged the last episode: {judged}, '
                               f'step {t["step"]} of {need}, '
                               f'{self.cfg.train_steps_per_frame:g} per frame of {self.episode_frames})',
                               throttle_duration_sec=10.0)
        return True

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _tick_if_idle(self):
        if self._now() - self._last_tick > 0.5:
            self._tick()

    def _tick(self):
        now = self._now()
        self._last_tick = now
        if self._reset_future is not None:
            if not self._reset_future.done():
                return
            result = self._reset_future.result()
            self._reset_future = None
            self.get_logger().info(f'reset: {result.message if result else "no answer"}')
            self.q = self.task = None     # wait for fresh post-reset state
            self.success = False
            self.policy_command = None
            self.human.reset_done(now)
            return
        phase = self.human.expert.phase
        if self.human.state == 'settling' and (self._missing_listeners() or self._policy_not_ready()
                                               or self._trainer_behind(now)):
            self.human.reset_done(now)   # keep settling, the arm held home (a policy coming up must not drive)
            out = self.human.hold_home()
        else:
            out = self.human.tick(now, self.q, self.task, self.success, self.policy_command, self.commanded)
        if self.human.expert.phase != phase:
            self.get_logger().debug(f'expert phase {phase} -> {self.human.expert.phase} (gripper '
                                    f'{self.q[6]:.4f}, peg z {self.task["peg_pos"][2]:.3f})'
                                    if self.q is not None and self.task else '')
        if out['reset']:
            if not self.reset_client.wait_for_service(timeout_sec=0.0):
                self.get_logger().warning(f'waiting for {self.cfg.reset_service}', throttle_duration_sec=5.0)
                self.human.retry_reset()
                return
            self._reset_future = self.reset_client.call_async(Trigger.Request())
            return
        # Events first: an episode's end goes out before the hold that follows it, so the
        # recorder does not count that hold as a takeover inside the episode.
        for event in out['events']:
            self.pub_event.publish(String(data=event))
            self.get_logger().debug(f"event {event} published to {self.pub_event.get_subscription_count()} subscribers")
            if event != 'start':
                self._judged_at_end = self.trainer['judged']
                done = self.human.episodes_done
                self.get_logger().info(f'episode {done}: {event} (takeovers: {self.human.takeovers}, '
                                       f'expert phase: {self.human.expert.phase})')
        # On every change, and again each second: a subscriber that matched after the latched
        # sample went out (the mux subscribes volatile) would otherwise never learn a flag that
        # does not change, e.g. 'human in control' through a whole demonstration.
        if out['intervention'] != self._last_intervention or now - self._intervention_sent_t >= 1.0:
            self.pub_intervention.publish(Bool(data=bool(out['intervention'])))
            self._last_intervention = out['intervention']
            self._intervention_sent_t = now
        if out['command'] is not None:
            self.pub_cmd.publish(Float64MultiArray(data=[float(v) for v in out['command']]))
        if self.human.state == 'done':
            self.get_logger().info(f'finished {self.human.episodes_done} episodes: '
                                   f'{self.human.outcomes.count("success")} successes')
            rclpy.try_shutdown()
            return
        self.diag.publish(OK, self.human.state, {'mode': self.cfg.mode, 'episodes': self.human.episodes_done,
                                                 'in_control': self.human.in_control,
                                                 'takeovers': self.human.takeovers,
                                                 'expert_phase': self.human.expert.phase})


def main(args=None):
    run_node(SimHumanNode, args)


if __name__ == '__main__':
    main()
