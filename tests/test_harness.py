"""The harness pieces (step kit, phases, test-time optimisation, seeded randomness, per-rank state), and proof that the
battery's checks fail when the property they check is broken (shown on the template)."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from bilatcf.models import base as base_module
from bilatcf.models.kit import NCritic, OptimizerSpec, SampleRandom, StepCounters, linear_decay
from bilatcf.nn.pool import HistoryPool
from bilatcf.registry import get_model_class, list_models
from tests.test_models import (
    build,
    check_evaluates_through_the_trainer,
    check_nan_at_a_loss_stops_before_any_optimizer_steps,
    check_resume_matches_uninterrupted_run,
    check_schedule_trains_every_optimizer_parameter,
    quiet_trainer,
)

# ---------------------------------------------------------------------------------------------------- kit pieces


def test_vagan_n_critic_schedule():
    schedule = NCritic(n=5, warmup_n=100, warmup_generator_steps=25, warmup_every=100)
    steps = [schedule.critic_steps(g) for g in range(202)]
    assert steps[:25] == [100] * 25 and steps[25:100] == [5] * 75
    assert steps[100] == 100 and steps[101:200] == [5] * 99 and steps[200] == 100
    assert NCritic(n=5).critic_steps(0) == 5


@pytest.mark.parametrize(
    ("schedule", "batches", "generator_steps"),
    [
        (NCritic(n=1), 7, 7),
        (NCritic(n=5), 10, 2),
        (NCritic(n=5, warmup_n=100, warmup_generator_steps=25, warmup_every=100), 2500, 25),
        (NCritic(n=5, warmup_n=100, warmup_generator_steps=25, warmup_every=100), 2500 + 75 * 5, 100),
        (NCritic(n=5, warmup_n=100, warmup_generator_steps=25, warmup_every=100), 2500 + 75 * 5 + 100, 101),
    ],
)
def test_generator_due_follows_the_n_critic_schedule(schedule, batches, generator_steps):
    model = get_model_class("_template")(backbone="test_resnet")
    for _ in range(batches):  # what a WGAN training step does with the counters
        due = model.generator_due(schedule)
        model.steps.increment("critic")
        if due:
            model.steps.increment("generator")
    assert model.steps["generator"] == generator_steps
    resumed = get_model_class("_template")(backbone="test_resnet")
    resumed.load_state_dict(model.state_dict())
    assert resumed.generator_due(schedule) == model.generator_due(schedule)  # the schedule survives a checkpoint


def test_linear_decay_keeps_the_rate_then_reaches_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = linear_decay(optimizer, epochs=4, decay_epochs=2)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [1.0, 1.0, 1.0, 0.5] and optimizer.param_groups[0]["lr"] == 0.0
    assert scheduler.state_dict()["lr_lambdas"]  # picklable factor: the schedule survives a checkpoint


def test_step_counters_round_trip_as_extra_state():
    counters = StepCounters()
    counters.increment("critic", 3)
    copy = StepCounters()
    copy.load_state_dict(counters.state_dict())
    assert copy["critic"] == 3 and copy["generator"] == 0


def test_sample_random_depends_only_on_the_sample_key():
    whole = SampleRandom(seed=0, step=4, indices=[7, 8, 9, 10], stream=1, device="cpu").rand(3)
    shard = SampleRandom(seed=0, step=4, indices=[9, 10], stream=1, device="cpu").rand(3)
    torch.testing.assert_close(whole[2:], shard)  # whichever process holds pairs 9 and 10 draws the same
    other_stream = SampleRandom(seed=0, step=4, indices=[9, 10], stream=2, device="cpu").rand(3)
    next_step = SampleRandom(seed=0, step=5, indices=[9, 10], stream=1, device="cpu").rand(3)
    assert not torch.allclose(shard, other_stream) and not torch.allclose(shard, next_step)


def test_pool_draws_follow_the_per_sample_generators():
    def run(generators):
        pool = HistoryPool(size=2)
        pool.query(torch.zeros(2, 1), generators(0))
        return pool.query(torch.ones(4, 1), generators(1))

    def keyed(step):
        return SampleRandom(0, step, [0, 1, 2, 3][: 2 if step == 0 else 4], 0, "cpu").generators

    torch.testing.assert_close(run(keyed), run(keyed))


# ---------------------------------------------------------------------------------------------------- step kit


class _Scheduled(get_model_class("_template")):
    """The template with a per-step scheduler on the generator and a per-epoch one on the discriminator."""

    def build_optimizers(self):
        specs = super().build_optimizers()
        generator, discriminator = specs["generator"], specs["discriminator"]
        return {
            "generator": OptimizerSpec(generator, torch.optim.lr_scheduler.StepLR(generator, 1, 0.5), "step"),
            "discriminator": OptimizerSpec(
                discriminator, torch.optim.lr_scheduler.StepLR(discriminator, 1, 0.5), "epoch"
            ),
        }


def test_schedulers_step_per_their_interval(tiny_datamodule_factory):
    pl.seed_everything(0)
    model = _Scheduled(backbone="test_resnet")
    quiet_trainer(max_epochs=2, limit_train_batches=3).fit(model, datamodule=tiny_datamodule_factory())
    rates = {name: model.optimizer(name).param_groups[0]["lr"] for name in ("generator", "discriminator")}
    assert rates["generator"] == pytest.approx(2e-4 * 0.5**6)  # six generator steps
    assert rates["discriminator"] == pytest.approx(2e-4 * 0.5**2)  # two epochs


class _ClassifierWithStepScheduler(get_model_class("sbf")):
    def build_optimizers(self):
        optimizer = super().build_optimizers()["model"]
        return {"model": OptimizerSpec(optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5), "step")}


def test_automatic_optimisation_steps_schedulers_per_interval_too(tiny_datamodule_factory):
    model = _ClassifierWithStepScheduler(backbone="test_resnet")
    quiet_trainer(max_epochs=1, limit_train_batches=3).fit(model, datamodule=tiny_datamodule_factory())
    assert model.optimizer("model").param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5**3)


class _NormRecorder(pl.Callback):
    """Records the gradient norm each optimizer stepped with (after clipping and AMP unscaling; read after the step,
    since automatic optimisation runs the backward inside `optimizer.step`)."""

    def on_train_start(self, trainer, pl_module):
        self.norms: list[float] = []
        for optimizer in trainer.optimizers:
            optimizer.register_step_post_hook(lambda opt, args, kwargs: self.norms.append(_grad_norm(opt)))


def _grad_norm(optimizer) -> float:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


@pytest.mark.parametrize("name", ["sbf", "_template"])
def test_grad_clip_applies_to_automatic_and_manual_optimisation(name, tiny_datamodule_factory):
    model = get_model_class(name)(backbone="test_resnet", grad_clip=1e-3)
    recorder = _NormRecorder()
    quiet_trainer(max_epochs=1, limit_train_batches=2, callbacks=[recorder]).fit(
        model, datamodule=tiny_datamodule_factory()
    )
    assert recorder.norms and all(norm <= 1e-3 * (1 + 1e-4) for norm in recorder.norms)


def test_grad_clip_runs_after_amp_unscaling(tiny_datamodule_factory):
    # Clipping the still-scaled gradients would leave them at ~1e-3 / 2**8 after unscaling.
    from pytorch_lightning.plugins.precision import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    model = get_model_class("_template")(backbone="test_resnet", grad_clip=1e-3)
    recorder = _NormRecorder()
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=3, callbacks=[recorder], plugins=[MixedPrecision("16-mixed", "cpu", scaler)]
    )
    trainer.fit(model, datamodule=tiny_datamodule_factory())
    finite = [n for n in recorder.norms if math.isfinite(n)]
    assert finite and all(n == pytest.approx(1e-3, rel=1e-3) for n in finite)


def test_an_optimizer_outside_the_phase_is_refused(tiny_datamodule_factory):
    model = get_model_class("_phased")(backbone="test_resnet", gan_epochs=1)
    model.training_step = lambda batch, batch_idx: model.step("classifier", torch.zeros((), requires_grad=True))
    with pytest.raises(Exception, match="does not train in phase 'gan'"):
        quiet_trainer(max_epochs=2, limit_train_batches=1).fit(model, datamodule=tiny_datamodule_factory())


# ---------------------------------------------------------------------------------------------------- phases


class _ParameterSnapshots(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        self.start = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_epoch_end(self, trainer, pl_module):
        changed = {n for n, p in pl_module.named_parameters() if not torch.equal(self.start[n], p.detach())}
        self.changed_per_epoch = [*getattr(self, "changed_per_epoch", []), (pl_module.phase.name, changed)]


def test_phases_run_in_order_with_their_parts_frozen(tiny_datamodule_factory, tmp_path):
    pl.seed_everything(0)
    model = get_model_class("_phased")(backbone="test_resnet", gan_epochs=1)
    snapshots = _ParameterSnapshots()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/auc", mode="max", filename="best-{epoch}")
    trainer = quiet_trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        enable_checkpointing=True,
        callbacks=[snapshots, checkpoint],
    )
    trainer.fit(model, datamodule=tiny_datamodule_factory())
    (gan, gan_changed), *classifier = snapshots.changed_per_epoch
    assert gan == "gan" and [name for name, _ in classifier] == ["classifier", "classifier"]
    assert gan_changed and all(n.startswith(("network.generator", "network.discriminator")) for n in gan_changed)
    for _, changed in classifier:
        assert changed and all(n.startswith(("network.backbone", "network.head")) for n in changed)
    # The GAN stage scores nothing: the best checkpoint is one of the classifier stage.
    assert checkpoint.best_model_path.endswith(("epoch=1.ckpt", "epoch=2.ckpt"))


def test_phases_need_enough_epochs(tiny_datamodule_factory):
    model = get_model_class("_phased")(backbone="test_resnet", gan_epochs=2)
    with pytest.raises(Exception, match="needs --trainer.max_epochs > 2"):
        quiet_trainer(max_epochs=2, limit_train_batches=1).fit(model, datamodule=tiny_datamodule_factory())


# ---------------------------------------------------------------------------------------------------- evaluation


def test_anomaly_threshold_is_chosen_on_validation_and_checkpointed(tiny_model_datamodule, tmp_path):
    cls = get_model_class("_latent_search")
    model = cls(**cls.test_config)
    assert math.isnan(float(model.operating_threshold))
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=3)
    trainer.fit(model, datamodule=tiny_model_datamodule(cls))
    threshold = float(model.operating_threshold)
    assert math.isfinite(threshold)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    assert float(cls.load_from_checkpoint(tmp_path / "m.ckpt").operating_threshold) == threshold


def test_validation_uses_the_cheaper_search(tiny_model_datamodule, monkeypatch):
    cls = get_model_class("_latent_search")
    model, steps = cls(val_search_steps=1, test_search_steps=4), []
    decoder = model.decoder.forward
    monkeypatch.setattr(model.decoder, "forward", lambda z: steps.append(z.shape[0]) or decoder(z))
    datamodule = tiny_model_datamodule(cls)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    validation_calls = len(steps)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert validation_calls == 1 + 1 and len(steps) - validation_calls == 4 + 1  # search steps + the final map


# ---------------------------------------------------------------------------------------------------- per-rank state


def test_each_rank_gets_its_own_pool_back():
    model = get_model_class("_template")(backbone="test_resnet", pool_size=4)
    states = [
        {"pool": {"items": torch.full((1, 1, 2, 2), float(rank)), "generator": model.pool.generator.get_state()}}
        for rank in range(2)
    ]
    checkpoint = {"state_dict": model.state_dict(), "bilatcf_rank_states": states}
    model._trainer = type("Rank1", (), {"global_rank": 1})()  # what Lightning sets when restoring on rank 1
    model.on_load_checkpoint(checkpoint)
    model._trainer = None
    model.load_state_dict(checkpoint["state_dict"])
    assert model.pool.num_stored == 1 and float(model.pool.items[0].mean()) == 1.0


# ---------------------------------------------------------------------------------------------------- broken on purpose


def test_gradient_check_fails_for_a_parameter_outside_every_optimizer(tiny_datamodule_factory):
    model = build("_template", {})
    model.forgotten = torch.nn.Linear(1, 1)
    with pytest.raises(AssertionError, match="forgotten"):
        check_schedule_trains_every_optimizer_parameter(model, tiny_datamodule_factory())


def test_nan_check_fails_when_the_first_step_is_not_undone(tiny_datamodule_factory, monkeypatch):
    monkeypatch.setattr(base_module, "_restore", lambda snapshot: None)
    with pytest.raises(AssertionError, match="parameters changed"):
        check_nan_at_a_loss_stops_before_any_optimizer_steps("_template", {}, tiny_datamodule_factory())


def test_a_nan_term_logged_outside_any_step_undoes_the_earlier_steps_too(tiny_model_datamodule):
    # CycleGAN logs its classification term before the classifier step is entered, after its D and G steps.
    model_class = get_model_class("cyclegan")
    datamodule = tiny_model_datamodule(model_class)
    check_nan_at_a_loss_stops_before_any_optimizer_steps("cyclegan", {}, datamodule, poisoned_name="cls")


def test_resume_check_fails_when_the_pool_is_left_out_of_the_checkpoint(tiny_datamodule_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(HistoryPool, "set_extra_state", lambda self, state: None)
    with pytest.raises(AssertionError, match="pool"):
        check_resume_matches_uninterrupted_run("_template", {}, tiny_datamodule_factory(), tmp_path)


def test_evaluation_check_fails_when_inference_mode_stays_on(tiny_model_datamodule, tmp_path, monkeypatch):
    cls = get_model_class("_latent_search")
    monkeypatch.setattr(cls, "test_time_optimization", False)  # the harness then leaves inference mode on
    with pytest.raises(RuntimeError):
        check_evaluates_through_the_trainer(cls(**cls.test_config), tiny_model_datamodule(cls), tmp_path)


def test_hidden_models_are_registered_but_not_listed():
    assert "_template" in list_models(include_hidden=True) and "_template" not in list_models()


def _save_from_rank(rank: int, port: int, path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = get_model_class("_template")(backbone="test_resnet", pool_size=4)
        model.pool.query(torch.full((1, 1, 2, 2), float(rank)))  # each rank pools its own samples
        checkpoint: dict = {"state_dict": model.state_dict()}
        model.on_save_checkpoint(checkpoint)
        if rank == 0:
            torch.save(checkpoint["bilatcf_rank_states"], path)
    finally:
        dist.destroy_process_group()


def test_a_checkpoint_keeps_every_ranks_pool(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "states.pt"
    torch.multiprocessing.spawn(_save_from_rank, args=(port, str(path)), nprocs=2)
    states = torch.load(path, weights_only=False)
    assert [float(state["pool"]["items"].mean()) for state in states] == [0.0, 1.0]
