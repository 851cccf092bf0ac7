"""History pool: CycleGAN semantics and an exact resume from a state dict."""

import io

import pytest
import torch
from torch import nn

from bilatcf.errors import ConfigError
from bilatcf.nn.pool import HistoryPool


def _batches(count: int, batch_size: int = 2):
    # Sample k of the stream is the constant image k, so every returned sample tells where it came from.
    values = torch.arange(count * batch_size, dtype=torch.float32).view(count, batch_size, 1, 1, 1)
    return list(values.expand(-1, -1, 1, 4, 2).unbind(0))


def test_size_zero_is_pass_through():
    batch = torch.rand(3, 1, 4, 2)
    assert HistoryPool(size=0).query(batch) is batch


def test_negative_size_is_a_config_error():
    with pytest.raises(ConfigError, match="≥ 0"):
        HistoryPool(size=-1)


def test_pool_fills_then_swaps_half_of_the_samples():
    pool = HistoryPool(size=4, seed=0)
    filling = torch.arange(4.0).view(4, 1, 1, 1).expand(-1, 1, 4, 2)
    assert torch.equal(pool.query(filling), filling) and pool.num_stored == 4
    rest = [batch + 4 for batch in _batches(400, batch_size=1)]
    from_pool = 0
    for batch in rest:
        before = {item[0, 0, 0].item() for item in pool.items}
        out = pool.query(batch)
        assert out.shape == batch.shape and not out.requires_grad
        after = {item[0, 0, 0].item() for item in pool.items}
        for value, new in zip(out[:, 0, 0, 0].tolist(), batch[:, 0, 0, 0].tolist()):
            if value != new:  # swapped: an old sample comes out and the new one takes its place
                assert value in before and new in after
                from_pool += 1
    assert 0.42 < from_pool / len(rest) < 0.58  # probability 0.5 over 400 samples


def test_state_dict_round_trip_reproduces_next_queries():
    class Model(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.pool = HistoryPool(size=3, seed=seed)

    stream = _batches(30)
    original = Model(seed=1)
    for batch in stream[:10]:
        original.pool.query(batch)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # as a checkpoint does
    assert "pool._extra_state" in original.state_dict()
    resumed = Model(seed=2)  # another seed: only the checkpoint can make it agree
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.pool.num_stored == 3
    outputs = [(original.pool.query(batch), resumed.pool.query(batch)) for batch in stream[10:]]
    assert all(torch.equal(a, b) for a, b in outputs)
    assert any(not torch.equal(a, batch) for (a, _), batch in zip(outputs, stream[10:]))  # the pool did swap


def test_loading_a_larger_pool_is_a_config_error():
    big = HistoryPool(size=4)
    big.query(torch.rand(4, 1, 2, 2))
    with pytest.raises(ConfigError, match="pool size"):
        HistoryPool(size=2).load_state_dict(big.state_dict())
