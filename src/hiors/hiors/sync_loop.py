"""The Hi-ORS loop in one process, stepped synchronously, for learning benchmarks.

The same cores the nodes wrap — MuJoCo sim (hiors_sim.sim_core), simulated human (hiors_sim.
sim_human), pi0-style policy with its processor and chunk execution (hiors_policy.chunk_executor),
the command mux (hiors_teleop.mux: priority, limits, velocity limit, takeover blend; what it sends is
what is recorded, as the recorder records /hiors/executed_action), the trainer (hiors_trainer.
core) — driven tick by tick in simulated time instead of over DDS in wall-clock time. A failed
evaluation episode then costs a few seconds instead of its 30 s time-out, which is what makes a
methods x seeds x budgets sweep affordable on a CPU. What it leaves out is transport: no message
latency (the graph adds 1-2 ticks), no dropped frames, training in lock-step with the robot
(`updates_per_frame` train steps per recorded frame, weights swapped after every episode) rather
than asynchronously. `hiors demo` and `bench/bench_learning.py --engine graph` run the real graph.
"""
from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from hiors_common.contracts import DEFAULT_PROMPT
from hiors_policy.chunk_executor import DEFAULT_BLEND_TICKS, DEFAULT_LEAD_TICKS, ChunkExecutor
from hiors_policy.object_pose import OBJECT_POSE_NAMES, observed_state
from hiors_policy.processing import PolicyProcessor
from hiors_recorder.dataset import Episode
from hiors_recorder.episode import EpisodeInfo
from hiors_sim.sim_core import PegInsertionSim, SimConfig
from hiors_sim.sim_human import SimHuman, SimHumanConfig
from hiors_sim.tasks import task_config
from hiors_teleop.mux import HUMAN, POLICY, CommandMux, MuxConfig

PROMPT = DEFAULT_PROMPT


class PolicyActor:
    """The policy acting alone through the policy node's chunk executor
    (hiors_policy.chunk_executor), with the node's lead and cross-fade by default: inference takes
    no simulated time here, so a chunk asked `lead_ticks` early is planned from an observation that
    many ticks older than the tick it starts at, which is the graph's measured camera frame ->
    command latency (policy node diagnostics; BENCHMARKS.md). `lead_ticks` 0 / `blend_ticks` 0 is
    the latency-free ideal (execute each chunk from its first action)."""

    def __init__(self, policy, norm_stats, prompt: str = PROMPT, lead_ticks: int | None = None,
                 blend_ticks: int | None = None):
        self.policy = policy.eval()
        self.config = policy.config
        self.processor = PolicyProcessor(policy.config, norm_stats)
        self.prompt = prompt
        # None = the policy node's value
        self.lead_ticks = DEFAULT_LEAD_TICKS if lead_ticks is None else lead_ticks
        self.blend_ticks = DEFAULT_BLEND_TICKS if blend_ticks is None else blend_ticks
        self.executor = ChunkExecutor(self.config.n_action_steps, self.lead_ticks, self.blend_ticks)
        self.tick = 0
        self.reset()

    def reset(self):
        self.executor.reset()

    def load(self, state_dict, norm_stats):
        """Hot swap: new weights from the next chunk on."""
        self.policy.load_state_dict(state_dict)
        self.processor = PolicyProcessor(self.config, norm_stats)
        self.reset()

    def command(self, state, images):
        """The command for this tick (None = hold, as the node does on a NaN chunk). `images`:
        camera -> frame, or a callable returning that, called only on ticks that plan a chunk
        (an evaluation then renders the cameras on those ticks only)."""
        self.tick += 1
        if self.executor.needs_request(self.tick):
            self.executor.mark_requested()
            batch = self.processor.prepare_observation(images() if callable(images) else images, state,
                                                       self.prompt)
            with torch.no_grad():
                chunk = self.processor.joint_targets(self.policy.sample_actions(batch)[0], state)
            self.executor.submit(chunk, self.tick)
        return self.executor.command(self.tick)


@dataclass
class EpisodeResult:
    outcome: str
    episode: Episode | None
    takeovers: int = 0
    ticks: int = 0
    end_phase: str = ''          # the expert's reading of the last state: 'fallen' = peg knocked over
    fell_in: str = ''            # the expert's phase just before the peg fell ('' = it did not fall)
    fell_under: str = ''         # who was driving when it fell: 'policy' or 'human'


@dataclass
class SyncWorld:
    """Sim + simulated human for one run; `episode()` runs one whole labelled episode."""
    task: str = 'peg_insert'
    mode: str = 'intervene'                  # sim human: demo | intervene | label_only
    episode_timeout_s: float = 30.0
    cameras: tuple = ('front', 'wrist')
    # Camera resolution, as the sim node renders it; the policy's processor resizes to its own
    # image_size exactly as in the graph (rendering at the policy's size would be another image).
    image_size: int = 224
    human_overrides: dict = field(default_factory=dict)
    sim_overrides: dict = field(default_factory=dict)    # SimConfig fields over the task's
    mux_overrides: dict = field(default_factory=dict)    # MuxConfig fields over the mux node's defaults
    # Ticks between a command's decision and the arm receiving it (the ROS graph has ~1-3:
    # DDS hops through the mux, inference time). 0 = the lock-step ideal.
    command_delay_ticks: int = 0
    # Upper-bound studies only: the policy's state also holds the true peg and hole (x, y, yaw),
    # as if perception were perfect (state_dim 13 instead of 7). Never on the robot.
    privileged_state: bool = False
    # The policy's state also holds the peg and hole (x, y, yaw) as this
    # hiors_policy.object_pose.ObjectPoseEstimator reads them from the cameras and joints (state_dim
    # 13, like privileged_state but with perception's errors). None = joints only.
    object_estimator: object = None
    # Upper-bound studies only, with object_estimator: the policy acts on the estimated poses but
    # the episodes record the true ones (what a perfect hindsight labelling would train on).
    record_true_poses: bool = False

    def __post_init__(self):
        if self.privileged_state and self.object_estimator is not None:
            raise ValueError('privileged_state and object_estimator are exclusive: true or estimated poses')
        if self.record_true_poses and self.object_estimator is None:
            raise ValueError('record_true_poses needs an object_estimator (the poses the policy acts on)')
        cfg = SimConfig(**dict(task_config(self.task), **self.sim_overrides))
        cfg.camera_width = cfg.camera_height = self.image_size
        self.sim = PegInsertionSim(cfg)
        self.dt = 1.0 / cfg.control_rate_hz
        self.human = SimHuman(SimHumanConfig(mode=self.mode, episode_timeout_s=self.episode_timeout_s, task=self.task,
                                             **self.human_overrides))
        self.mux = CommandMux(MuxConfig(**self.mux_overrides))
        self.now = 0.0
        self.count = 0

    def _through_mux(self, q, intervention: bool, cmd):
        """What the mux node would send now for this tick's command (None = nothing new)."""
        mux = self.mux
        mux.update_joint_state(q, self.now)
        mux.set_intervention(intervention, self.now)
        if cmd is not None:
            mux.submit(HUMAN if intervention else POLICY, cmd, self.now)
        out = mux.step(self.now)
        mux.drain_events()
        return self.sim.target.copy() if out is None else out.command

    def images(self):
        return {c: self.sim.render(c) for c in self.cameras}

    def episode(self, seed: int, actor: PolicyActor | None = None, record: bool = True) -> EpisodeResult:
        """Reset to the task instance `seed`, run until the human labels it, bring the arm home."""
        sim, human = self.sim, self.human
        human.run_one_more()
        rec = None
        ticks = 0
        outcome = None
        fell_in = fell_under = ''
        last_phase = 'start'
        in_flight = deque()
        max_ticks = int((self.episode_timeout_s + 20.0) / self.dt)
        frames = {}                       # this tick's camera frames, rendered only if used

        def tick_images():
            if not frames:
                frames.update(self.images())
            return frames
        while ticks < max_ticks:
            q, task = sim.joint_positions(), sim.task_state()
            frames.clear()
            if self.privileged_state:
                obs_state = privileged_state(q, task)
            else:
                obs_state = observed_state(q, tick_images, self.object_estimator)
            policy_cmd = None
            if rec is not None and actor is not None and not human.in_control:
                policy_cmd = actor.command(obs_state, tick_images)
            driving = 'human' if human.in_control else 'policy'
            out = human.tick(self.now, q, task, sim.success(), policy_cmd)
            if rec is not None and not fell_in:
                if human.expert.phase == 'fallen':
                    fell_in, fell_under = last_phase, driving
                else:
                    last_phase = human.expert.phase
            if out['reset']:
                sim.reset(seed)
                human.reset_done(self.now)
                continue
            for ev in out['events']:
                if ev == 'start':
                    rec = {'state': [], 'action': [], 'human': [], 'images': {c: [] for c in self.cameras}}
                    self.mux.resync(self.now)     # as the mux node does on 'start'
                    if actor is not None:
                        actor.reset()
                elif ev in ('success', 'failure', 'abort'):
                    outcome = ev
            if outcome is not None:
                break
            if out['intervention']:
                cmd = out['command']
                if actor is not None:
                    actor.reset()                 # chunks are dropped across a takeover
            else:
                cmd = policy_cmd
            cmd = self._through_mux(q, bool(out['intervention']), cmd)
            if self.command_delay_ticks:
                in_flight.append(np.asarray(cmd, float).copy())
                applied = in_flight.popleft() if len(in_flight) > self.command_delay_ticks else sim.target
            else:
                applied = cmd
            if rec is not None and human.state == 'running':
                if record:
                    for c in self.cameras:
                        rec['images'][c].append(tick_images()[c])
                rec['state'].append(privileged_state(q, task) if self.record_true_poses else obs_state)
                rec['action'].append(np.asarray(cmd, float).copy())
                rec['human'].append(bool(out['intervention']))
            sim.step(applied)
            self.now += self.dt
            ticks += 1
        if outcome is None:
            outcome = 'abort'
        end_phase = human.expert.phase
        # Home the arm (the human's homing phase) so the next reset starts from rest.
        for _ in range(int(4.0 / self.dt)):
            out = human.tick(self.now, sim.joint_positions(), sim.task_state(), False, None)
            if human.state != 'homing':
                break
            sim.step(self._through_mux(sim.joint_positions(), bool(out['intervention']), out['command']))
            self.now += self.dt
        self.count += 1
        ep = None
        if rec is not None and rec['state'] and record:
            T = len(rec['state'])
            human_steps = np.asarray(rec['human'], bool)
            info = EpisodeInfo(episode_id=f'{self.mode}-{self.count:05d}-seed{seed}', outcome=outcome,
                               reward=float(outcome == 'success'), start_time=0.0, end_time=T * self.dt,
                               steps=T, num_interventions=human.takeovers, task=PROMPT)
            ep = Episode(info=info, t=np.arange(T) * self.dt, state=np.asarray(rec['state'], np.float32),
                         action=np.asarray(rec['action'], np.float32), intervention=human_steps,
                         images={c: np.asarray(v) for c, v in rec['images'].items()},
                         action_source=np.where(human_steps, 'human', 'policy'),
                         intervention_flag=human_steps.copy())
        return EpisodeResult(outcome, ep, human.takeovers, ticks, end_phase, fell_in, fell_under)


# What privileged_state appends to the joints: the true values of the estimator's outputs, same order.
PRIVILEGED_OBJECT_DIMS = len(OBJECT_POSE_NAMES)


def privileged_state(q, task) -> np.ndarray:
    """Joints + true peg and hole (x, y, yaw): the perfect-perception state of upper-bound runs."""
    from hiors_sim.sim_core import _quat_yaw
    obj = [*task['peg_pos'][:2], _quat_yaw(task['peg_quat']), *task['hole_pos'][:2], _quat_yaw(task['hole_quat'])]
    return np.concatenate([np.asarray(q, float), obj])


class EpisodeStore:
    """In-memory episode directories for the trainer (its lister/loader hooks)."""

    def __init__(self):
        self.dirs: dict[str, list[Episode]] = {}

    def add(self, root: str, ep: Episode):
        self.dirs.setdefault(root, []).append(ep)

    def lister(self, root):
        return [e.info for e in self.dirs.get(root, [])]

    def loader(self, info, rate_hz=None):
        for eps in self.dirs.values():
            for e in eps:
                if e.info is info or e.info.episode_id == info.episode_id:
                    return e
        raise KeyError(info.episode_id)

    def frames(self, root) -> int:
        return sum(len(e.state) for e in self.dirs.get(root, []))


def policy_copy(trainer) -> tuple[dict, object]:
    """The trainer's current weights and norm stats, detached (what a checkpoint carries)."""
    return copy.deepcopy(trainer.model_state()), trainer.norm_stats


__all__ = ['PolicyActor', 'SyncWorld', 'privileged_state', 'EpisodeResult', 'EpisodeStore', 'policy_copy', 'PROMPT']
