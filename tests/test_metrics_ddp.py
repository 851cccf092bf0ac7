"""The evaluation suite gives the same numbers on 2 gloo ranks (each with half of the pairs) as in one process."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bilatcf.data.types import BilateralBatch
from bilatcf.metrics import EvaluationSuite
from tests.test_callbacks import FakeModel, _sample


def _outputs(indices):
    output = FakeModel().predict_step(BilateralBatch.collate([_sample(i) for i in indices]))
    # Break ties and the perfect counterfactual so that every metric has a non-trivial value.
    return output.replace(
        score=output.score + 0.01 * torch.tensor(indices, dtype=torch.float32),
        counterfactual=(output.counterfactual + 0.05 * output.batch.target_mask).clamp(0, 1),
        cf_features=output.cf_features + 0.1 * output.target_features,
    )


def _suite_results(batches):
    suite = EvaluationSuite(num_bootstrap=200, seed=5)
    for indices in batches:
        suite.update(_outputs(indices))
    return suite.compute()


def _worker(rank: int, address: str, queue) -> None:
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
    try:
        queue.put((rank, _suite_results([[rank, rank + 2], [rank + 4, rank + 6]])))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_suite_syncs_across_two_ranks(tmp_path):
    context = mp.get_context("spawn")
    queue = context.Queue()
    address = f"file://{tmp_path / 'rendezvous'}"
    processes = [context.Process(target=_worker, args=(rank, address, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    single = _suite_results([list(range(8))])
    assert len(single) > 25
    for rank in range(2):
        assert results[rank].keys() == single.keys()
        for key, value in single.items():
            assert results[rank][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
