"""The ImageNet EfficientNet-Lite0 backbone of the keypoint tower: the installed weights are what a
fresh policy starts from, its BatchNorm statistics stay frozen while training, it trains at the
scaled learning rate in the real trainer, and a checkpoint round-trips it."""
import numpy as np
import pytest
import torch

from hiors_policy.checkpoint import load_checkpoint
from hiors_policy.config import make_config
from hiors_policy.keypoints import efficientnet_lite0_imagenet
from hiors_policy.modeling import Pi0Policy
from hiors_policy.synthetic import random_batch
from hiors_recorder.synthetic import write_synthetic_episode
from hiors_trainer.core import Trainer, TrainerConfig

torch.set_num_threads(1)
LITE0 = dict(vision_backbone='efficientnet_lite0')


def test_config_validates_the_backbone():
    assert make_config('tiny').vision_backbone == 'conv'
    with pytest.raises(ValueError, match='vision_backbone'):
        make_config('tiny', vision_backbone='resnet18')
    with pytest.raises(ValueError, match='vision_backbone_lr_scale'):
        make_config('tiny', vision_backbone_lr_scale=-1.0)


def test_fresh_policy_starts_from_imagenet_and_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    c = make_config('tiny', **LITE0)
    ref = efficientnet_lite0_imagenet()
    p = Pi0Policy(c)
    bb = p.vision.backbone.state_dict()
    assert len(bb) > 50 and all(torch.equal(v, ref[k]) for k, v in bb.items())
    # A conv-backbone policy has no such parameters (its state dict keys are unchanged).
    assert not any('backbone' in k for k in Pi0Policy(make_config('tiny')).state_dict())
    p.train()
    stats = {k: v.clone() for k, v in bb.items() if 'running' in k}
    loss = p.compute_loss(random_batch(c, 4)).mean()
    loss.backward()
    assert all(torch.equal(p.vision.backbone.state_dict()[k], v) for k, v in stats.items())
    assert p.vision.backbone._conv_stem.weight.grad.abs().sum() > 0      # fine-tuned, not frozen


def test_trainer_steps_the_backbone_at_the_scaled_rate_and_checkpoint_round_trips(tmp_path):
    for i, outcome in enumerate(['success', 'success']):
        write_synthetic_episode(str(tmp_path / 'eps'), steps=24, outcome=outcome, seed=i,
                                start_ns=int(1e18) + i * int(1e10))
    cfg = TrainerConfig(episode_dir=str(tmp_path / 'eps'), out_dir=str(tmp_path / 'out'), batch_size=4,
                        replan_stride=4, checkpoint_every_steps=100, intake_interval_s=0.2, lr=1e-3,
                        warmup_steps=0)
    tr = Trainer(cfg)
    tr.resume_or_init(config=make_config('tiny', vision_backbone_lr_scale=0.25, **LITE0))
    tr.ingest()
    before = {k: v.clone() for k, v in tr.policy.state_dict().items()}
    out = tr.train_step()
    assert np.isfinite(out['loss'])
    groups = tr.optimizer.param_groups
    assert [g['lr_scale'] for g in groups] == [1.0, 0.25]
    assert groups[1]['lr'] == pytest.approx(0.25 * groups[0]['lr'])
    backbone_ids = {id(q) for q in tr.policy.vision.backbone.parameters()}
    assert {id(q) for q in groups[1]['params']} == backbone_ids
    after = tr.policy.state_dict()
    assert not torch.equal(after['vision.backbone._conv_stem.weight'], before['vision.backbone._conv_stem.weight'])
    assert torch.equal(after['vision.backbone._bn0.running_mean'], before['vision.backbone._bn0.running_mean'])
    info = tr.save_checkpoint()
    policy, config, _, _ = load_checkpoint(info['path'])
    assert config.vision_backbone == 'efficientnet_lite0'
    saved, got = tr.model_state(), policy.state_dict()
    assert set(saved) == set(got) and all(torch.equal(got[k], saved[k].cpu()) for k in saved)
    # Inference of the loaded policy (eval mode, the default tiny sampler) gives finite chunks.
    batch = random_batch(config, 1)
    with torch.no_grad():
        chunk = policy.sample_actions(batch)
    assert torch.isfinite(chunk).all()
