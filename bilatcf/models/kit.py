"""The pieces of the GAN step kit that are plain data or plain PyTorch (DESIGN §4); the base module wires them up.

* :class:`OptimizerSpec` — one named optimizer with its optional LR scheduler and the scheduler's ``interval``;
* :class:`NCritic` — how many critic steps come before each generator step (with VA-GAN's warm-up);
* :func:`linear_decay` — CycleGAN's schedule: constant LR for the first epochs, then linear decay to 0;
* :class:`Phase` — one stage of a staged method (epochs, active optimizers, frozen parts, whether it scores);
* :class:`StepCounters` — a step count per optimizer (and any other named count), checkpointed with the model;
* :class:`SampleRandom` — random draws keyed on (seed, step, global sample index, stream), so DDP and resumed runs
  draw what a single uninterrupted process draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from bilatcf.errors import ConfigError

Interval = Literal["step", "epoch"]


@dataclass
class OptimizerSpec:
    """A named optimizer for :meth:`BilateralModule.build_optimizers`.

    Args:
        optimizer: the optimizer over the parameters this name updates.
        scheduler: an optional LR scheduler of that optimizer.
        interval: ``epoch`` steps the scheduler at the end of every training epoch; ``step`` after every step of this
            optimizer (its own steps, not batches: a critic stepped five times per generator step advances five).
    """

    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    interval: Interval = "epoch"

    def __post_init__(self) -> None:
        if self.interval not in ("step", "epoch"):
            raise ConfigError(f"scheduler interval {self.interval!r} is not 'step' or 'epoch'.")


@dataclass(frozen=True)
class NCritic:
    """The critic-to-generator step schedule of WGAN-style training: ``n`` critic steps per generator step.

    VA-GAN (Baumgartner et al. 2018) trains the critic longer at the start and now and then: ``warmup_n`` critic steps
    before each of the first ``warmup_generator_steps`` generator steps and before every ``warmup_every``-th one
    (100, 25 and 100 in the paper). ``warmup_generator_steps = 0`` and ``warmup_every = 0`` turn that off.
    """

    n: int = 1
    warmup_n: int = 100
    warmup_generator_steps: int = 0
    warmup_every: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.warmup_n < 1 or self.warmup_generator_steps < 0 or self.warmup_every < 0:
            raise ConfigError(f"n-critic schedule {self} needs n, warmup_n ≥ 1 and warm-up counts ≥ 0.")

    def critic_steps(self, generator_steps: int) -> int:
        """Critic steps due before generator step number ``generator_steps`` (counting from 0)."""
        warm = generator_steps < self.warmup_generator_steps
        periodic = self.warmup_every > 0 and generator_steps > 0 and generator_steps % self.warmup_every == 0
        return self.warmup_n if warm or periodic else self.n


def linear_decay(
    optimizer: torch.optim.Optimizer, epochs: int, decay_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """CycleGAN's LR schedule (epoch interval): the initial LR for ``epochs − decay_epochs`` epochs, then linearly to 0.

    After epoch ``e`` (0-based, stepped at its end) the factor is ``1 − max(0, e + 1 − (epochs − decay_epochs)) /
    decay_epochs``, so the last epoch trains at LR·1/decay_epochs and the LR reaches 0 when training ends.
    """
    if not 0 <= decay_epochs <= epochs:
        raise ConfigError(f"linear_decay: decay_epochs={decay_epochs} must lie in [0, epochs={epochs}].")
    constant = epochs - decay_epochs
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, _LinearDecay(constant, max(decay_epochs, 1)) if decay_epochs else _Constant()
    )


class _LinearDecay:
    """A picklable LR factor (a lambda would not survive ``state_dict``)."""

    def __init__(self, constant: int, decay: int) -> None:
        self.constant, self.decay = constant, decay

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch - self.constant) / self.decay


class _Constant:
    def __call__(self, epoch: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Phase:
    """One training stage of a staged method (CX-GAN cascaded, f-AnoGAN).

    Args:
        name: shown in logs and errors.
        epochs: how many epochs the stage lasts; None for the last stage, which runs until ``trainer.max_epochs``.
        optimizers: the optimizer names the stage steps (the step kit refuses the others); empty: all of them.
        frozen: sub-module names (dotted, e.g. ``network.generator``) that do not learn in this stage (``requires_grad``
            off, eval mode).
        scores: whether the stage's model produces the task scores; validation AUC is only monitored (and the best
            checkpoint only chosen) in stages that do.
    """

    name: str
    epochs: int | None
    optimizers: tuple[str, ...]
    frozen: tuple[str, ...] = ()
    scores: bool = True


class StepCounters(nn.Module):
    """Named step counts (one per optimizer, plus any a schedule needs), saved in checkpoints as extra state.

    ``trainer.global_step`` advances once per ``optimizer.step()``, so it counts a GAN iteration two or three times and
    knows nothing of n-critic schedules; these counters count what each schedule means.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)

    def increment(self, name: str, by: int = 1) -> int:
        self.counts[name] = self[name] + by
        return self.counts[name]

    def reset(self, name: str) -> None:
        self.counts[name] = 0

    def get_extra_state(self) -> dict[str, int]:
        return dict(self.counts)

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.counts = {str(k): int(v) for k, v in state.items()}


def sample_seed(*key: int) -> int:
    """A 63-bit seed from an integer key (``np.random.SeedSequence`` mixes every part into every bit)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in key]).generate_state(1, np.uint64)[0] >> 1)


class SampleRandom:
    """Random draws for one batch, one generator per sample keyed on (seed, step, global sample index, stream).

    Row ``i`` of every draw depends only on the key of sample ``i``: the same whichever process holds the sample, in
    whatever batch it sits, and after a resume. Draws are made on the CPU and moved to ``device``.
    """

    def __init__(self, seed: int, step: int, indices: Sequence[int], stream: int, device: torch.device | str) -> None:
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, step, index, stream)) for index in indices]
        self.device = device

    def __len__(self) -> int:
        return len(self.generators)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """U(0, 1) draws of ``[B, *shape]``."""
        return torch.stack([torch.rand(shape, generator=g, dtype=dtype) for g in self.generators]).to(self.device)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """N(0, 1) draws of ``[B, *shape]``."""
        return torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in self.generators]).to(self.device)

    def uniform(self, low: float, high: float, *shape: int) -> Tensor:
        """U(low, high) draws of ``[B, *shape]``."""
        return low + (high - low) * self.rand(*shape)
