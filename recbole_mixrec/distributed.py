"""Training in several processes on RecBole's distributed path (issue 15).

RecBole 1.2.1 already shards the training data (``DistributedSampler`` when ``single_spec`` is
False), wraps the model in DistributedDataParallel and gathers evaluation results. What it
cannot do, and this module adds:

- start on CPU: ``Config._init_device`` hard-codes NCCL and ``torch.cuda.set_device``, so the
  plugin builds the Config as a single process and then joins the group itself
  (``join_process_group``: ``dist_backend`` auto = NCCL on GPUs, gloo on CPU);
- a DDP wrap without ``device_ids`` on CPU (``wrap_model``);
- exact evaluation: RecBole pads the last shard with repeated users and averages the ranks'
  rounded metrics weighted by batch counts; here every rank's per-user rows are gathered,
  the padding dropped, and the metrics computed once over all users (``gather_eval_rows``);
- one launcher (``spawn``) like RecBole's ``run_recbole.py --nproc``, whose workers' errors
  come back as one line.
"""

import gc
import hashlib
import logging
import math
import os
import sys
import traceback

import torch
import torch.distributed as dist

from recbole_mixrec.errors import MixRecError

def backend_for(config):
    """``dist_backend``: 'auto' picks NCCL when this run uses GPUs, gloo otherwise."""
    backend = config["dist_backend"] or "auto"
    if backend == "auto":
        return "nccl" if config["use_gpu"] and torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not (config["use_gpu"] and torch.cuda.is_available()):
        raise MixRecError("dist_backend: nccl needs a run on GPUs (use_gpu and a GPU here); use gloo or auto")
    return backend


def check_distributed(config):
    """What a distributed run cannot do, refused before any process starts (and in each rank);
    returns the process group backend."""
    from recbole.utils import ModelType

    backend = backend_for(config)
    if config["MODEL_TYPE"] == ModelType.TRADITIONAL:
        # Pop and the like count the data in plain tensors that no process group reduces
        raise MixRecError(f"{config['model']} has nothing to train in parallel: run it with one process")
    cached = [key for key in ("save_dataset", "save_dataloaders") if config[key]]
    if cached or config["dataloaders_save_path"]:
        # RecBole's saved dataloaders are not sharded, and every rank would write the same file
        raise MixRecError(f"{', '.join(cached) or 'dataloaders_save_path'} cannot be used with several processes")
    return backend


def join_process_group(config, local_rank):
    """Make ``config`` (built as a single process) this rank's: join the process group, pick the
    device, and set the keys RecBole's trainer and data loaders read."""
    backend = check_distributed(config)
    rank = local_rank + config["offset"]
    on_gpu = config["use_gpu"] and torch.cuda.is_available()
    if on_gpu:
        if local_rank >= torch.cuda.device_count():
            raise MixRecError(f"--nproc={config['nproc']} but gpu_id '{config['gpu_id']}' makes "
                              f"{torch.cuda.device_count()} GPUs visible: list one per process")
        torch.cuda.set_device(local_rank)  # before the group: NCCL binds to the current device
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=config["world_size"],
                                init_method=f"tcp://{config['ip']}:{config['port']}")
    config["local_rank"] = local_rank
    config["single_spec"] = False
    config["device"] = device
    if rank != 0:  # as RecBole: one rank logs and shows progress
        config["state"] = "error"
        config["show_progress"] = False
        config["verbose"] = False


def wrap_model(model, config):
    """DistributedDataParallel over the trainable weights (DDP skips frozen ones: the LLM is
    broadcast once at construction and never reduced)."""
    device = config["device"]
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def broadcast_state(model):
    """Rank 0's weights and buffers to every rank, once, after a start computed from each rank's
    own shard of the data (MixRec's item head, a pre-trained frozen CF model)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def barrier():
    dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (e.g. the checkpoint file name, which holds the time)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def trainable_digest(model):
    """A hash of the trainable weights: equal on every rank after every step."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def all_digests(model):
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, trainable_digest(model))
    return digests


def gather_eval_rows(struct, sample_size):
    """Every rank's per-user evaluation rows (``rec.*``, ``data.label``) in ``struct``, the
    DistributedSampler's padding dropped: rank r's k-th row is user r + k * world_size of the
    unshuffled evaluation order, and positions >= ``sample_size`` repeat earlier users."""
    world, rank = dist.get_world_size(), dist.get_rank()
    for key in [k for k in struct._data_dict if k.startswith("rec.") or k == "data.label"]:
        rows = struct.get(key)
        if rows.shape[0] != math.ceil(sample_size / world):
            raise MixRecError(f"evaluation rows of rank {rank}: {rows.shape[0]}, expected a "
                              f"{world}-way shard of {sample_size} (are the loaders sharded?)")
        positions = rank + world * torch.arange(rows.shape[0])
        keep = positions < sample_size
        parts = [None] * world
        dist.all_gather_object(parts, (positions[keep], rows[keep].cpu()))
        # back in the one-process order: the metrics' sums then add up in the same order
        order = torch.cat([p for p, _ in parts]).argsort()
        struct.set(key, torch.cat([r for _, r in parts], dim=0)[order].to(rows.device))
    return struct


def launch_settings(nproc, world_size, ip, port, group_offset):
    """The config entries of a distributed run, checked before any process starts."""
    if nproc < 1:
        raise MixRecError(f"--nproc={nproc}: expected an integer >= 1")
    world_size = nproc if world_size in (None, -1) else world_size
    if world_size < nproc:
        raise MixRecError(f"--world_size={world_size} is smaller than --nproc={nproc}")
    if not 0 <= group_offset <= world_size - nproc:
        raise MixRecError(f"--group_offset={group_offset}: expected 0..{world_size - nproc} (this node's first rank)")
    return {"nproc": nproc, "world_size": world_size, "ip": ip, "port": str(port), "offset": group_offset}


def _worker(local_rank, run, args, kwargs, queue):
    try:
        result = run(*args, local_rank=local_rank, **kwargs)
    except BaseException as err:  # noqa: BLE001  the parent turns it into one line
        line = str(err) if isinstance(err, MixRecError) else traceback.format_exc().strip().splitlines()[-1]
        queue.put(("error", f"rank {local_rank}: {line}"))
        if not isinstance(err, MixRecError):
            traceback.print_exc(file=sys.stderr)
        # a non-zero exit makes the launcher stop the other ranks, which would otherwise wait
        # for this one in their next collective call
        os._exit(1)
    # before the barrier below: once a rank is past it, every rank has said it finished
    queue.put(("finished", local_rank))
    if local_rank == 0:
        queue.put(("ok", result))
    _leave_process_group()


def _leave_process_group():
    """Every rank at the barrier, then the group destroyed. DDP's reducer and gloo's threads live
    in reference cycles; left to interpreter teardown they sometimes abort the process
    ("terminate called without an active exception") after its work is done."""
    if not dist.is_initialized():
        return
    gc.collect()
    try:
        dist.barrier()
        dist.destroy_process_group()
    except Exception as err:  # noqa: BLE001  the work is done and reported; shutting down is best effort
        print(f"shutting down the process group: {err}", file=sys.stderr)


def spawn(run, nproc, args=(), kwargs=None):
    """Run ``run(*args, local_rank=r, **kwargs)`` in ``nproc`` processes; rank 0's result.
    A worker's error ends the run with ``MixRecError`` naming the rank; a rank that dies only
    after every rank has finished its work (torch's teardown) is logged, and the result kept."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    procs = mp.start_processes(_worker, args=(run, args, kwargs or {}, queue), nprocs=nproc,
                               join=False, start_method="spawn")
    messages, died = [], []

    def drain():  # while waiting too: a large result would fill the pipe and block rank 0
        while not queue.empty():
            messages.append(queue.get())

    try:
        while not procs.join(timeout=1):
            drain()
    except Exception as err:  # noqa: BLE001  a worker died: its message is in the queue or the log
        died.append(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    drain()
    results = [value for status, value in messages if status == "ok"]
    finished = {value for status, value in messages if status == "finished"}
    if died and results and len(finished) == nproc:
        # every rank's work was done and rank 0's result is here: a death in torch's teardown
        # (gloo threads at interpreter exit) loses nothing, so the run stands, with a warning
        logging.getLogger(__name__).warning(f"every rank finished, then {died[0]} while exiting; result kept")
        died = []
    # the first rank to fail wrote first; the others' errors (connection closed) follow it
    errors = [value for status, value in messages if status == "error"] + died
    if errors or not results:
        raise MixRecError("distributed run failed: " + (errors[0] if errors else "rank 0 returned nothing"))
    return results[0]
