"""Rejection sampling on hand-built episodes: each rejection reason, the rising schedule, the
varied-frequency sample indices and the padded action-chunk labels."""
from types import SimpleNamespace

import numpy as np
import pytest

from hiors_trainer import sampling as S


def ep(T=30, outcome='success', reward=1.0, human=(), still=(), eid='e'):
    rng = np.random.default_rng(0)
    state = np.cumsum(rng.normal(0, 0.05, (T, 7)), axis=0).astype(np.float32)
    for k in still:                 # step k -> k+1 does not move
        state[k + 1:] -= state[k + 1] - state[k]
    inter = np.zeros(T, bool)
    for a, b in human:
        inter[a:b] = True
    action = np.roll(state, -1, axis=0)
    return SimpleNamespace(info=SimpleNamespace(outcome=outcome, reward=reward, episode_id=eid),
                           state=state, action=action, intervention=inter)


def test_too_short_and_aborted_and_threshold():
    cfg = S.FilterConfig(min_steps=2)
    assert S.episode_filter(ep(T=2), cfg).reason == S.REASON_TOO_SHORT
    assert S.episode_filter(ep(T=3), cfg).usable
    assert S.episode_filter(ep(outcome='abort', reward=0.0), cfg).reason == S.REASON_ABORTED
    fail = S.episode_filter(ep(outcome='failure', reward=0.0), cfg)
    assert fail.usable and not S.accepted(fail, 1.0, cfg)
    ok = S.episode_filter(ep(), cfg)
    assert S.accepted(ok, 1.0, cfg)
    # HG-DAgger: no rejection on the return.
    assert S.accepted(fail, 1.0, S.FilterConfig(use_rejection=False))
    # Ablation without filters keeps short episodes.
    assert S.episode_filter(ep(T=2), S.FilterConfig(use_filters=False)).usable


def test_noop_transitions_dropped_and_counted():
    d = S.episode_filter(ep(T=30, still=(3, 4)), S.FilterConfig(replan_stride=1))
    assert 3 not in d.indices and 4 not in d.indices and 5 in d.indices
    assert d.transition_rejects[S.REASON_NO_OP] == 2
    d2 = S.episode_filter(ep(T=30, still=(3, 4)), S.FilterConfig(replan_stride=1, use_filters=False))
    assert 3 in d2.indices and not d2.transition_rejects


def test_varied_frequency_indices():
    d = S.episode_filter(ep(T=60, human=((25, 31),)), S.FilterConfig(replan_stride=20))
    # autonomous 0..24 at stride 20 from its start, human 25..30 dense, autonomous 31.. from 31.
    assert d.indices.tolist() == [0, 20, 25, 26, 27, 28, 29, 30, 31, 51]
    only = S.episode_filter(ep(T=60, human=((25, 31),)), S.FilterConfig(human_steps='only'))
    assert only.indices.tolist() == list(range(25, 31))
    assert only.transition_rejects[S.REASON_NOT_HUMAN] == 4
    none = S.episode_filter(ep(T=60, human=((25, 31),)), S.FilterConfig(human_steps='none'))
    assert none.indices.tolist() == [0, 20, 31, 51]
    assert none.transition_rejects[S.REASON_NO_HUMAN] == 6


def test_autonomous_steps_just_before_a_takeover_are_dropped():
    """The human took over at 25: the policy's steps 21..24 (within 4 of it) led there and are
    not cloned; the human's steps and the later autonomous segment are kept."""
    cfg = S.FilterConfig(replan_stride=1, pre_takeover_steps=4)
    d = S.episode_filter(ep(T=40, human=((25, 31),)), cfg)
    assert d.indices.tolist() == list(range(0, 21)) + list(range(25, 40))
    assert d.transition_rejects[S.REASON_BEFORE_TAKEOVER] == 4
    # A demonstration (human throughout) has no takeover; the ablation without filters keeps all.
    assert S.episode_filter(ep(T=40, human=((0, 40),)), cfg).indices.tolist() == list(range(40))
    nofilter = S.episode_filter(ep(T=40, human=((25, 31),)), S.FilterConfig(replan_stride=1, use_filters=False,
                                                                           pre_takeover_steps=4))
    assert nofilter.indices.tolist() == list(range(40))


def test_whole_autonomous_segment_a_takeover_ended_is_dropped():
    """Takeovers at 10 and 25: the policy's segments 0..9 and 16..24 ended in a takeover and are
    dropped whole; the last autonomous segment (31..39, on to the episode's end) is kept."""
    cfg = S.FilterConfig(replan_stride=1, pre_takeover_steps=S.WHOLE_SEGMENT)
    d = S.episode_filter(ep(T=40, human=((10, 16), (25, 31))), cfg)
    assert d.indices.tolist() == list(range(10, 16)) + list(range(25, 40))
    assert d.transition_rejects[S.REASON_BEFORE_TAKEOVER] == 19
    # No takeover: every autonomous step is kept.
    assert S.episode_filter(ep(T=40, human=()), cfg).indices.tolist() == list(range(40))
    with pytest.raises(ValueError):
        S.FilterConfig(pre_takeover_steps=-2)


def test_trainer_drops_whole_corrected_segments_by_default(tmp_path):
    from hiors_trainer.core import Trainer, TrainerConfig
    tr = Trainer(TrainerConfig(method='hiors', out_dir=str(tmp_path / 'tr'), episode_dir=str(tmp_path)))
    tr.resume_or_init()
    assert tr.fcfg.pre_takeover_steps == S.WHOLE_SEGMENT
    assert TrainerConfig(pre_takeover_steps=0).filter_config().pre_takeover_steps == 0


def test_fixed_frequency_ablation_samples_human_steps_at_the_replan_stride():
    from hiors_trainer.core import TrainerConfig
    # every step kept before the takeover, so only the strides select
    varied = TrainerConfig(method='hiors', replan_stride=5, pre_takeover_steps=0).filter_config()
    fixed = TrainerConfig(method='hiors_fixed_frequency', replan_stride=5, pre_takeover_steps=0).filter_config()
    assert varied.human_stride == 1 and fixed.human_stride == 5 and fixed.replan_stride == 5
    d = S.episode_filter(ep(T=30, human=((10, 22),)), fixed)
    # every 5th step from each segment's start, whoever drives
    assert d.indices.tolist() == [0, 5, 10, 15, 20, 22, 27]


def test_replan_stride_zero_follows_the_policy_for_both_strides(tmp_path):
    from hiors_trainer.core import Trainer, TrainerConfig
    for method, human_stride in (('hiors', 1), ('hiors_fixed_frequency', None)):
        tr = Trainer(TrainerConfig(method=method, out_dir=str(tmp_path / method), episode_dir=str(tmp_path)))
        tr.resume_or_init()
        k = tr.config.n_action_steps
        assert k > 1 and tr.fcfg.replan_stride == k
        assert tr.fcfg.human_stride == (human_stride or k)


def test_action_chunk_from_executed_actions_padded():
    a = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    c, pad = S.action_chunk(a, 7, 5)
    assert np.array_equal(c[:3], a[7:10]) and np.array_equal(c[3], a[9]) and np.array_equal(c[4], a[9])
    assert pad.tolist() == [False, False, False, True, True]
    c, pad = S.action_chunk(a, 0, 5)
    assert np.array_equal(c, a[:5]) and not pad.any()


def test_rising_schedule():
    s = S.ThresholdSchedule([0.0, 0.5, 1.0], [5, 10])
    assert [s.threshold(n) for n in (0, 4, 5, 9, 10, 100)] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    t = S.ThresholdSchedule([0.0, 1.0], [60.0], unit='seconds')
    assert t.threshold(elapsed_s=59) == 0.0 and t.threshold(elapsed_s=61) == 1.0
    with pytest.raises(ValueError):
        S.ThresholdSchedule([1.0, 0.5], [3])          # must not fall
    with pytest.raises(ValueError):
        S.ThresholdSchedule([0.0, 1.0], [])


def test_success_classifier_overrides_label():
    d = S.episode_filter(ep(reward=0.0, outcome='failure'), S.FilterConfig(), success_classifier=lambda e: 1.0)
    assert d.ret == 1.0 and S.accepted(d, 1.0, S.FilterConfig())


def test_non_finite_episode_rejected():
    e = ep()
    e.state[4, 2] = np.nan
    assert S.episode_filter(e, S.FilterConfig()).reason == S.REASON_NON_FINITE
