"""The image/feature history pool of CycleGAN (Shrivastava et al. 2017), checkpointed with the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bilatcf.errors import ConfigError


class HistoryPool(nn.Module):
    """Feeds the discriminator a mix of current and earlier generated samples, which damps GAN oscillation.

    Per sample of a query: while the pool is not full, the sample is stored and returned; afterwards, with probability
    0.5 a random stored sample is returned and replaced by the new one, otherwise the new one is returned. Samples are
    stored and returned detached (the pool only feeds the discriminator step).

    The stored samples and the state of the pool's own random generator are part of ``state_dict()`` (extra state), so a
    run resumed from a checkpoint draws exactly what the uninterrupted run would have drawn. Under DDP every process
    keeps its own pool of its own samples (``per_rank_state``: bilatcf checkpoints keep every rank's pool). Draws come
    from per-sample generators when the caller passes them (bilatcf models pass ones keyed on the sample, so the draws
    do not depend on which process holds a sample), else from the pool's own generator.

    Args:
        size: number of samples kept; 0 disables the pool (queries are returned unchanged).
        seed: seed of the pool's random generator.
    """

    per_rank_state = True

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        super().__init__()
        if size < 0:
            raise ConfigError(f"History pool size must be ≥ 0 (0 disables it); got {size}.")
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.items: list[Tensor] = []

    @property
    def num_stored(self) -> int:
        """How many samples the pool holds."""
        return len(self.items)

    def query(self, batch: Tensor, generators: Sequence[torch.Generator] | None = None) -> Tensor:
        """Return a batch of the same shape, each sample either ``batch``'s or one swapped out of the pool.

        ``generators``: one CPU generator per sample for its draws (None: the pool's own generator).
        """
        if self.size == 0:
            return batch
        if generators is not None and len(generators) != len(batch):
            raise ConfigError(f"HistoryPool.query got {len(generators)} generators for {len(batch)} samples.")
        returned = []
        for i, sample in enumerate(batch.detach()):
            generator = self.generator if generators is None else generators[i]
            if len(self.items) < self.size:
                self.items.append(sample.clone())
                returned.append(sample)
            elif torch.rand(1, generator=generator).item() < 0.5:
                index = int(torch.randint(len(self.items), (1,), generator=generator).item())
                returned.append(self.items[index].to(sample.device, sample.dtype))
                self.items[index] = sample.clone()
            else:
                returned.append(sample)
        return torch.stack(returned)

    def get_extra_state(self) -> dict[str, Any]:
        items = torch.stack(self.items) if self.items else torch.empty(0)
        return {"items": items, "generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        items = state["items"]
        if len(items) > self.size:
            raise ConfigError(
                f"The checkpoint holds a history pool of {len(items)} samples but this model's pool size "
                f"is {self.size}; build the model with the checkpoint's pool size."
            )
        self.items = list(items.unbind(0)) if len(items) else []
        self.generator.set_state(state["generator"].cpu())
