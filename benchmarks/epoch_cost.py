"""What one epoch of a preset costs, from real training steps: the sizing tool of the presets.

    python -m benchmarks.epoch_cost --dataset ml-100k --config_files properties/quality/ml-100k-history5.yaml \
        --variants "preset:" "history20:max_seq_items=20,train_max_windows=None" [--steps 8]

Each variant (``name:key=value,...`` on top of the config files and the command's ``--key=value``
entries) gets its own config, dataset, loaders, model and optimizer, built as ``run_mixrec``
builds them (the item head's start from the data is skipped: it does not change a step's cost).
Then, round-robin over the variants so that drift of the machine hits all alike, each times
``--steps`` real training steps (all of the model's losses, backward, clipping, AdamW; one
warm-up step first) on its own training batches, and ``--eval_batches`` full-ranking validation
batches (the first ones of the unshuffled validation loader). Not timed: loading a batch and
moving it to the device; the trainer is MixRec's (AdamW over the trainable weights), without
AMP. Printed per variant: median seconds per step, steps per epoch, the projected minutes of
one epoch of training and of one validation, and the ratio of the epoch to the first variant's.
Figures taken while other work shares the machine are not timings.

``--weights CHECKPOINT`` starts every variant from a trained model's weights (of the same model
and settings) instead of a fresh one: what a late epoch costs. ``cpu_flush_denormal`` is
process-wide and reaches the OpenMP threads only when set before they start, so variants must
agree on it; time each setting in a run of its own (denormal gradients appear only after some
training):

    python -m benchmarks.epoch_cost --config_files properties/quality/ml-100k.yaml --weights <run>-last.pth \
        [--cpu_flush_denormal=False]
"""

import argparse
import statistics
import sys
import time

import torch

from recbole_mixrec.cli import config_entries, quiet_recbole_warnings, split_files
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.quick_start import apply_float_settings


def parse_variant(parser, text):
    name, sep, body = text.partition(":")
    if not sep or not name:
        parser.error(f"variant '{text}' is not written name:key=value,key=value (or name:)")
    return name, config_entries(parser, [f"--{item}" for item in body.split(",") if item])


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.epoch_cost",
        description="Projected epoch and validation time of preset variants, from timed real training steps.",
        epilog="Any other --key=value is a config entry for every variant, e.g. --backbone=tiny-random.",
    )
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", default="MixRec")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    parser.add_argument("--variants", nargs="+", default=["default:"], help="name:key=value,... per variant")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per variant (after one warm-up)")
    parser.add_argument("--eval_batches", type=int, default=3, help="timed validation batches per variant")
    parser.add_argument("--weights", default=None, metavar="CHECKPOINT",
                        help="start every variant from this checkpoint's weights (a trained model)")
    args, rest = parser.parse_known_args(argv)
    args.config_dict = config_entries(parser, rest)
    args.variants = [parse_variant(parser, text) for text in args.variants]
    if args.steps < 1 or args.eval_batches < 0:
        parser.error("--steps must be >= 1 and --eval_batches >= 0")
    if len({overrides.get("cpu_flush_denormal") for _, overrides in args.variants}) > 1:
        parser.error("cpu_flush_denormal is process-wide (the OpenMP threads keep the mode they started "
                     "with): time each setting in a run of its own, not as variants of one run")
    return args


class Variant:
    """One preset variant, built as ``run_mixrec`` builds a run, with iterators over its loaders."""

    def __init__(self, args, name, overrides):
        from recbole.data import data_preparation
        from recbole.utils import get_model, init_seed

        from recbole_mixrec.checkpoint import read_checkpoint
        from recbole_mixrec.quick_start import build_config, load_dataset
        from recbole_mixrec.trainer import MixRecTrainer

        self.name = name
        config = build_config(args.model, args.dataset, split_files(args.config_files),
                              {**args.config_dict, **overrides, "show_progress": False})
        init_seed(config["seed"], config["reproducibility"])
        apply_float_settings(config)  # before the first parallel op: the OpenMP threads inherit it
        train_data, valid_data, _ = data_preparation(config, load_dataset(config))
        self.model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        if args.weights:
            try:
                self.model.load_state_dict(read_checkpoint(args.weights)["state_dict"])
            except RuntimeError as err:  # another model or other settings: say so in one line
                raise MixRecError(f"--weights {args.weights} does not fit variant '{name}': "
                                  f"{str(err).splitlines()[0]}") from None
        self.trainer = MixRecTrainer(config, self.model)  # its optimizer: AdamW over the trainable weights
        self.clip = config["clip_grad_norm"]
        self.steps_per_epoch, self.eval_batches_per_run = len(train_data), len(valid_data)
        self.loaders = {"train": train_data, "valid": valid_data}
        self.batches = {split: iter(loader) for split, loader in self.loaders.items()}
        self.step_s, self.eval_s = [], []

    def _next(self, split):
        """The next batch of ``split``, starting the loader over when it runs out."""
        batch = next(self.batches[split], None)
        if batch is None:
            self.batches[split] = iter(self.loaders[split])
            batch = next(self.batches[split])
        return batch

    def train_step(self):
        """The body of RecBole's ``Trainer._train_epoch`` for one batch."""
        self.model.train()
        interaction = self._next("train").to(self.trainer.device)
        self._sync()
        start = time.perf_counter()
        self.trainer.optimizer.zero_grad()
        losses = self.model.calculate_loss(interaction)
        sum(losses).backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), **self.clip)
        self.trainer.optimizer.step()
        self._sync()
        return time.perf_counter() - start

    @torch.no_grad()
    def eval_batch(self):
        self.model.eval()
        interaction = self._next("valid")[0].to(self.trainer.device)
        self._sync()
        start = time.perf_counter()
        self.model.full_sort_predict(interaction)
        self._sync()
        return time.perf_counter() - start

    def _sync(self):
        # CUDA runs asynchronously: without this a step's time would be its kernel launches
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)

    def report(self, reference=None):
        step = statistics.median(self.step_s)
        epoch_min = step * self.steps_per_epoch / 60
        valid_min = statistics.median(self.eval_s) * self.eval_batches_per_run / 60 if self.eval_s else float("nan")
        ratio = "" if reference is None else f", epoch x{epoch_min / reference:.2f}"
        print(f"{self.name}: {step:.3f} s/step (median of {len(self.step_s)}), {self.steps_per_epoch} steps/epoch "
              f"-> {epoch_min:.1f} min/epoch; validation {valid_min:.1f} min ({self.eval_batches_per_run} batches){ratio}")
        return epoch_min


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_recbole_warnings()
    variants = [Variant(args, name, overrides) for name, overrides in args.variants]
    print(f"torch threads: {torch.get_num_threads()}")
    for variant in variants:
        variant.train_step()  # warm-up: first-call allocations and lazy inits
    for _ in range(args.steps):
        for variant in variants:
            variant.step_s.append(variant.train_step())
    for _ in range(args.eval_batches):
        for variant in variants:
            variant.eval_s.append(variant.eval_batch())
    reference = None
    for variant in variants:
        epoch_min = variant.report(reference)
        reference = epoch_min if reference is None else reference
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MixRecError as error:
        sys.exit(f"error: {error}")
