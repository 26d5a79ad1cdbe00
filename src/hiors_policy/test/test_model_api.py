"""Fast smoke test of the public policy API (shapes, finite loss, cached sampling)."""
import torch

from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.synthetic import random_batch

torch.set_num_threads(2)


def test_loss_and_sample_shapes():
    c = make_config('tiny')
    torch.manual_seed(0)
    p = Pi0Policy(c)
    b = random_batch(c, 2)
    loss = p.compute_loss(b)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    chunk = p.sample_actions(b)
    assert chunk.shape == (2, c.chunk_size, c.max_action_dim) and torch.isfinite(chunk).all()
