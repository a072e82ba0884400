"""MixRecTrainer: RecBole's Trainer with AdamW over trainable weights and warm-up + cosine.

Everything else (progress bars, gradient clipping via ``clip_grad_norm``, full-ranking
evaluation, early stopping, best-checkpoint saving) is RecBole's own ``Trainer`` unchanged.
"""

import copy
import math
import os
import random
import socket
import time
import warnings

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.optim.lr_scheduler import LambdaLR

from recbole_mixrec import distributed
from recbole_mixrec.checkpoint import read_checkpoint
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.fingerprint import dataset_fingerprint


def warmup_cosine(step, total_steps, warmup_steps):
    """LR multiplier: linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0 (spec 4)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def save_atomically(state, path):
    """``torch.save`` to a temporary file, then rename: a run killed while saving leaves the
    previous checkpoint intact instead of a truncated one."""
    # per process: the first process of every machine writes (a shared file system sees several)
    partial = f"{path}.partial.{socket.gethostname()}.{os.getpid()}"
    try:
        torch.save(state, partial)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    os.replace(partial, path)


def capture_rng_state(loaders):
    """Every random stream a training epoch draws from: Python's, NumPy's (RecBole's negative
    samplers), torch's CPU and CUDA ones (dropout, init) and each loader's own ``generator``
    (RecBole's shuffling; ``loaders`` maps a name to a DataLoader). Plain lists and tensors
    only, so that the checkpoint still loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": {name: loader.generator.get_state() for name, loader in loaders.items()
                    if getattr(loader, "generator", None) is not None},
    }


def restore_rng_state(state, loaders, logger=None):
    """Inverse of ``capture_rng_state``. CUDA states only when the device count matches (else
    a warning: a GPU run resumed on another machine draws new CUDA numbers)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"].clone())
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(state["cuda"]) != cuda_count:
        if logger is not None:
            logger.warning(f"checkpoint has {len(state['cuda'])} CUDA generator states, this machine "
                           f"{cuda_count} GPUs: CUDA random numbers are not replayed")
    elif cuda_count:
        torch.cuda.set_rng_state_all([s.clone() for s in state["cuda"]])
    for name, loader in loaders.items():
        if name in state["loaders"] and getattr(loader, "generator", None) is not None:
            loader.generator.set_state(state["loaders"][name].clone())


class WeightsOnlyCheckpointMixin:
    """Save checkpoints that ``torch.load(weights_only=True)`` (the torch >= 2.6 default) reads,
    and a resume checkpoint after every validation.

    RecBole writes them with ``pickle_protocol=4``, whose FRAME opcode the weights-only
    unpickler rejects whatever the content; the classes inside (RecBole's Config) are
    allowed in ``registry.allow_recbole_checkpoints``. Same content, default protocol.
    ``best_epoch`` is the epoch of the last checkpoint saved (RecBole saves on improvement).

    RecBole keeps only the best epoch's weights, so a run cut off resumes from its best epoch
    and trains the epochs after it again. With ``save_resume_checkpoint`` the state after every
    validation (weights, optimizer, early-stopping counters, best epoch and result) also goes
    to ``<best file>-last.pth``; resuming from that file continues where the run stopped and
    still tests the best file's weights. Both files also hold the random generators' states
    and the training time so far: a single-process run resumed from them trains the epochs the
    uninterrupted run would have trained (same shuffles, same dropout masks; random draws of a
    user's ``callback_fn`` excepted).

    ``learning_curve`` records every epoch as ``{"epoch", "train_loss", "valid_score"}``: the
    training loss averaged over the epoch's batches (RecBole logs the sum) from ``_train_epoch``,
    and the ``valid_metric`` score from ``_valid_epoch`` (None in an epoch without validation).
    Checkpoints hold it, so a resumed run's curve continues the earlier runs' one.
    """

    best_epoch = None
    _resumed_from_last = False
    _rng_state_to_restore = None
    _loaders = {}  # the loaders of the current fit, whose generators checkpoints save
    # training time of the runs this one continues, from its checkpoint (None: a checkpoint
    # older than that field, the earlier time is unknown)
    time_before_resume_s = 0.0
    _fit_seconds = 0.0
    _fit_started = None

    _exact_eval = False

    def __init__(self, config, model):
        several = not config["single_spec"]
        if several:
            # RecBole's own wrap pins DDP to a GPU (device_ids=[local_rank]): ours also runs on CPU
            config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not several
        if several:
            self.distributed_model = distributed.wrap_model(self.model, config)
            # the file name holds the second each rank started: rank 0's is the one written
            self.saved_model_file = distributed.broadcast_object(self.saved_model_file)
        self.learning_curve = []
        # the data as it was when this run read it (checkpoints carry it; a resume compares)
        self.data_fingerprint = dataset_fingerprint(self.config)

    def sync_grad_loss(self):
        """RecBole adds every parameter x 0 to the loss so that DDP sees each one used; the
        frozen backbone needs no gradient: only the trainable weights here."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return sum((p.sum() * 0 for p in params), torch.zeros((), device=self.device))

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if self.config["single_spec"] or not eval_data:
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if load_best_model:
            distributed.barrier()  # rank 0 may still be writing the best checkpoint
        collector, exact = self.eval_collector, isinstance(eval_data, FullSortEvalDataLoader)
        get_data_struct = collector.get_data_struct
        if exact:  # every rank's users once, then the metrics over all of them (no averaging)
            collector.get_data_struct = lambda: distributed.gather_eval_rows(get_data_struct(), eval_data.sample_size)
        self._exact_eval = exact
        try:
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        finally:
            collector.get_data_struct = get_data_struct
            self._exact_eval = False

    def _map_reduce(self, result, num_sample):
        # RecBole's average of the ranks' rounded metrics, weighted by batch counts: not needed
        # when the rows were gathered (full ranking)
        return result if self._exact_eval else super()._map_reduce(result, num_sample)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        losses = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        total = sum(losses) if isinstance(losses, tuple) else losses
        self.learning_curve.append({
            "epoch": epoch_idx,
            "train_loss": None if total is None else float(total) / max(1, len(train_data)),
            "valid_score": None,
        })
        return losses

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self.learning_curve:  # RecBole validates right after training an epoch
            self.learning_curve[-1]["valid_score"] = float(valid_score)
        return valid_score, valid_result

    @property
    def training_time_s(self):
        """Seconds spent in ``fit``, over this run and the runs it continues (None: unknown)."""
        if self.time_before_resume_s is None:
            return None
        running = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.time_before_resume_s + self._fit_seconds + running

    def _saved_config(self):
        """The config a checkpoint holds: a distributed run's as one process would have it, so
        that ``load_data_and_model`` and ``--resume_file`` work with any process count."""
        if self.config["single_spec"]:
            return self.config
        config = copy.copy(self.config)
        config.final_config_dict = dict(self.config.final_config_dict)
        config["single_spec"], config["local_rank"] = True, 0
        return config

    def _checkpoint_state(self, epoch):
        return {
            "config": self._saved_config(),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "training_time_s": self.training_time_s,
            "data_fingerprint": self.data_fingerprint,  # a resume checks it (checkpoint.check_resume)
            "rng_state": capture_rng_state(self._loaders),
            "learning_curve": [dict(point) for point in self.learning_curve],  # plain ints and floats
            "best_valid_score": float(self.best_valid_score),  # not a numpy scalar
            "state_dict": self.model.state_dict(),
            # tensors only (Pop's counts): pickled whole, the other values would make the file
            # unloadable with weights_only=True. Modules (FDSA's feature_embed_layer) are
            # submodules, already in state_dict; scipy and numpy matrices (ItemKNN's, EASE's)
            # are computed from the dataset again when the model is built
            "other_parameter": {k: v for k, v in self.model.other_parameter().items()
                                if v is None or isinstance(v, torch.Tensor)},
            "optimizer": self.optimizer.state_dict(),
        }

    @property
    def _writes_checkpoints(self):
        return self.config["single_spec"] or self.config["local_rank"] == 0  # rank 0 only

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self._writes_checkpoints:
            return
        if epoch < 0 and self._resumed_from_last:
            return  # RecBole's save when nothing is left to train: the best file is already there
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        # RecBole saves "epoch -1" when nothing is left to train; a resumed model keeps its epoch
        epoch = max(epoch, self.start_epoch - 1)
        save_atomically(self._checkpoint_state(epoch), saved_model_file)
        self.best_epoch = epoch
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    @property
    def resume_file(self):
        """Where the state after the latest validation goes."""
        return os.path.splitext(self.saved_model_file)[0] + "-last.pth"

    def _save_resume_checkpoint(self, epoch):
        if not self._writes_checkpoints:
            return
        state = self._checkpoint_state(epoch)
        state.update(
            best_model_file=os.path.basename(self.saved_model_file),  # same folder, may move
            best_epoch=self.best_epoch,
            best_valid_result={k: float(v) for k, v in (self.best_valid_result or {}).items()},
        )
        save_atomically(state, self.resume_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        if saved and self.config["save_resume_checkpoint"]:
            user_callback = callback_fn

            def callback_fn(epoch_idx, valid_score):  # RecBole calls it after each validation
                self._save_resume_checkpoint(epoch_idx)
                if user_callback is not None:
                    user_callback(epoch_idx, valid_score)

        self._loaders = {"train": train_data, "valid": valid_data}
        if self._rng_state_to_restore is not None:
            # here, not in resume_checkpoint: the loaders (their generators) are only known now
            if self.config["single_spec"]:
                restore_rng_state(self._rng_state_to_restore, self._loaders, self.logger)
                self.logger.info("random number generators restored from the checkpoint")
            else:  # one saved state (rank 0's) cannot stand for every rank's
                self.logger.warning("distributed run: random number generators not restored")
            self._rng_state_to_restore = None
        self._fit_started = time.perf_counter()
        try:
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        finally:
            self._fit_seconds += time.perf_counter() - self._fit_started
            self._fit_started = None

    def resume_checkpoint(self, resume_file):
        checkpoint = read_checkpoint(resume_file)
        best_file = None
        if "best_model_file" in checkpoint:
            best_file = os.path.join(os.path.dirname(str(resume_file)), checkpoint["best_model_file"])
            if not os.path.isfile(best_file):
                raise MixRecError(
                    f"{resume_file} continues the run whose best checkpoint is {best_file}, "
                    "which is missing: resume from a best checkpoint instead"
                )
            best = read_checkpoint(best_file)
            if best["epoch"] > checkpoint["epoch"]:
                # cut off between the two saves of one validation: the best file is the newer state
                resume_file, checkpoint, best_file = best_file, best, None
        super().resume_checkpoint(resume_file)  # a best checkpoint: later improvements overwrite it
        self.time_before_resume_s = checkpoint.get("training_time_s")
        self._rng_state_to_restore = checkpoint.get("rng_state")  # older files have neither
        self.learning_curve = [dict(point) for point in checkpoint.get("learning_curve") or []
                               if point["epoch"] < self.start_epoch]  # older files: starts here
        self.best_epoch = self.start_epoch - 1
        if best_file is not None:
            self.saved_model_file = best_file  # improvements and the final test use the best file
            self.best_epoch = checkpoint["best_epoch"]
            self.best_valid_result = checkpoint["best_valid_result"] or None
            self._resumed_from_last = True
            self.logger.info(f"best checkpoint so far: {best_file} (epoch {self.best_epoch})")
        if self.cur_step > self.stopping_step:
            # early stopping had ended this run (RecBole validates, then stops): train no further
            self.epochs = self.start_epoch
            self.logger.info("the checkpointed run had stopped early: nothing left to train")


def input_item_mask(scores, item_seq):
    """``[B, n_items]`` bool: True where an item is in the row's input sequence ``item_seq``
    (``[B, L]``, padded with item 0, which is never marked)."""
    mask = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, item_seq.to(scores.device), True)
    mask[:, 0] = False
    return mask


class ExcludeSeenItemsMixin:
    """``eval_exclude_seen``: full ranking leaves out the items of each user's input sequence.

    RecBole's full-sort evaluation masks a general model's training items but nothing for a
    sequential model, whose ``ITEM_SEQ`` may repeat. Where items are never consumed twice
    (ml-100k: no target is in its own input sequence) a model that reads only the last few
    items spends top-k places on items the user already has; this protocol option shows how
    much, the same for every model.
    """

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        item_seq = self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]
        if self.config["eval_exclude_seen"] and item_seq in interaction:
            scores.masked_fill_(input_item_mask(scores, interaction[item_seq]), -np.inf)
        return interaction, scores, positive_u, positive_i


class BaselineTrainer(WeightsOnlyCheckpointMixin, ExcludeSeenItemsMixin, Trainer):
    """RecBole's Trainer for the baselines, with checkpoints that torch 2.13 loads."""


_WITH_PLUGIN_CHECKPOINTS = {Trainer: BaselineTrainer}


def with_plugin_checkpoints(trainer_class):
    """``trainer_class`` (what ``recbole.utils.get_trainer`` picked, e.g. ``TraditionalTrainer``
    for Pop) with the plugin's checkpoints, resume file, learning curve and ``eval_exclude_seen``.
    Its training loop is RecBole's, unchanged. Trainers that are not RecBole ``Trainer`` subclasses (the
    decision-tree ones of context-aware models) and the plugin's own come back as they are."""
    if issubclass(trainer_class, WeightsOnlyCheckpointMixin) or not issubclass(trainer_class, Trainer):
        return trainer_class
    if trainer_class not in _WITH_PLUGIN_CHECKPOINTS:
        _WITH_PLUGIN_CHECKPOINTS[trainer_class] = type(
            f"WeightsOnly{trainer_class.__name__}", (WeightsOnlyCheckpointMixin, ExcludeSeenItemsMixin, trainer_class),
            {"__module__": __name__, "__doc__": f"RecBole's {trainer_class.__name__}, plugin checkpoints."},
        )
    return _WITH_PLUGIN_CHECKPOINTS[trainer_class]


class MixRecTrainer(WeightsOnlyCheckpointMixin, ExcludeSeenItemsMixin, Trainer):
    """Config keys read (besides RecBole's): ``learner`` (adamw), ``warmup_ratio``,
    ``head_learning_rate``, ``valid_untrained``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.warmup_ratio = config["warmup_ratio"]
        self.untrained_valid_result = None
        self.scheduler = None
        self._scheduler_hook = None

    def _build_optimizer(self, **kwargs):
        # the frozen backbone has no gradients: keep it out of the optimizer state
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        head = getattr(self.model, "item_projection", None)
        head_lr = self.config["head_learning_rate"]
        if head_lr is not None and head is not None and "params" not in kwargs:
            # the item head (most of the trainable weights) at its own peak rate; the schedule
            # scales both groups alike
            in_head = {id(p) for p in head.parameters()}
            kwargs["params"] = [
                {"params": [p for p in trainable if id(p) not in in_head]},
                {"params": [p for p in trainable if id(p) in in_head], "lr": head_lr},
            ]
        kwargs.setdefault("params", trainable)
        return super()._build_optimizer(**kwargs)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        # the schedule spans all epochs; a resumed run (start_epoch > 0) continues it where the
        # checkpoint's epoch ended instead of starting a new warm-up
        total_steps = max(1, len(train_data) * self.epochs)
        warmup_steps = max(1, int(self.warmup_ratio * total_steps))
        self.scheduler = LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps)
        )
        done_steps = len(train_data) * self.start_epoch
        if done_steps:
            self.scheduler.last_epoch = done_steps - 1
            with warnings.catch_warnings():  # torch warns that no optimizer step came first: none is due
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                self.scheduler.step()
        # one scheduler step after every optimizer step, whichever loop makes it
        if self._scheduler_hook is not None:
            self._scheduler_hook.remove()
        self._scheduler_hook = self.optimizer.register_step_post_hook(lambda *_: self.scheduler.step())
        self.logger.info(
            set_color("lr schedule", "blue")
            + f": peak {self.learning_rate}"
            + (f" (item head {self.config['head_learning_rate']})" if len(self.optimizer.param_groups) > 1 else "")
            + f", {warmup_steps} warm-up of {total_steps} steps, cosine"
        )
        if self.start_epoch == 0 and hasattr(self.model, "prepare_training"):
            self._prepare_model(train_data)
        if self.start_epoch == 0 and self.config["valid_untrained"] and valid_data is not None:
            # the same model before its first step: what training adds to the start from the data
            with torch.random.fork_rng(devices=[]):
                score, result = self._valid_epoch(valid_data, show_progress=show_progress)
            self.untrained_valid_result = result
            self.learning_curve.append({"epoch": -1, "train_loss": None, "valid_score": float(score)})
            self.logger.info(
                set_color("untrained (epoch -1) valid", "blue") + f": {self.valid_metric} {score:.4f}, {dict(result)}"
            )
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _prepare_model(self, train_data):
        """The model's one-off start from the data (MixRec: its item head) before a fresh run's
        first epoch; the random streams (torch's and the loader's shuffling) are left as they
        were, so the run trains as it would without it."""
        loader_generator = getattr(train_data, "generator", None)
        loader_state = loader_generator.get_state() if loader_generator is not None else None
        with torch.random.fork_rng(devices=[]):
            self.model.prepare_training(train_data)
        if loader_state is not None:
            loader_generator.set_state(loader_state)
        if not self.config["single_spec"]:
            distributed.broadcast_state(self.model)  # each rank saw its own shard

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        """Name each loss part (``model.loss_names``) instead of numbering it."""
        names = getattr(self.model, "loss_names", None)
        if not isinstance(losses, tuple) or not names:
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        parts = ", ".join(
            set_color(f"loss_{name}", "blue") + f": {value:.4f}" for name, value in zip(names, losses)
        )
        return (
            set_color(f"epoch {epoch_idx} training", "green")
            + f" [{set_color('time', 'blue')}: {e_time - s_time:.2f}s, "
            + f"{set_color('total', 'blue')}: {sum(losses):.4f}, {parts}] (sums over batches)"
        )
