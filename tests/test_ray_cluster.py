"""The architecture search on an existing Ray cluster (``bo_ray_address``), as a user with a
cluster runs it: a real head node started with ``ray start --head`` on 127.0.0.1, two real
MixRec trials sent to its address, the cluster stopped at the end even on failure."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import free_ports
from recbole_mixrec.search import run_search

pytestmark = pytest.mark.slow


def _start_head(cache_dir, seconds):
    """``ray start --head --block`` on fresh ports; its address once the GCS port answers, or
    None (the head stopped, or ``seconds`` passed) with the head stopped and its log kept."""
    # a short temp dir: Ray's socket paths must stay under 107 characters (tmp_path is longer)
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ports = free_ports(7)
    gcs, client, node_manager, object_manager, agent_listen, agent_grpc, metrics = ports
    # 51 worker ports that hold none of the head's own
    worker_low = free_ports(1)[0] // 2 * 2
    while any(worker_low <= port <= worker_low + 50 for port in ports):
        worker_low = free_ports(1)[0] // 2 * 2
    command = [
        os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--ray-client-server-port={client}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
        f"--dashboard-agent-listen-port={agent_listen}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--min-worker-port={worker_low}",
        f"--max-worker-port={worker_low + 50}", "--include-dashboard=false", "--num-cpus=2",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", RECBOLE_MIXREC_CACHE=cache_dir)
    log_path = os.path.join(temp_dir, "head.log")
    with open(log_path, "wb") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + seconds
    while time.time() < deadline and head.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", gcs)) == 0:
                return head, f"127.0.0.1:{gcs}", log_path
        time.sleep(0.5)
    _stop(head)
    return None, None, log_path


def _stop(head):
    # the head's SIGTERM handler stops its own processes; `ray stop` would stop every Ray
    # instance of this user
    head.terminate()
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()


@pytest.fixture
def ray_head(cache_dir):
    pytest.importorskip("ray")
    # A port found free can be taken before Ray binds it, and a loaded machine can start the
    # head slowly (one CI run saw no GCS after 90 s): up to three tries on fresh ports, and the
    # head's own output in the failure.
    logs = []
    for _ in range(3):
        head, address, log_path = _start_head(cache_dir, seconds=120)
        if head is not None:
            break
        logs.append(log_path)
    else:
        tails = "\n".join(f"--- {p}:\n{open(p, errors='replace').read()[-2000:]}" for p in logs)
        pytest.fail(f"no Ray head came up in 3 tries:\n{tails}")
    try:
        yield address
    finally:
        _stop(head)


def test_the_search_sends_its_trials_to_a_running_cluster(ray_head, tiny_config_dict, tmp_path):
    config = dict(tiny_config_dict, max_seq_items=3, lambda_cl=0.0, bo_iterations=2, bo_initial_points=2,
                  bo_parallel_trials=2, bo_subset_ratio=0.05, bo_trial_epochs=1, bo_ray_address=ray_head)
    _, results = run_search("MixRec", "ml-100k", config_dict=config, search_dir=str(tmp_path))
    records = results["records"]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records), records
    for record in records:
        placed = json.loads((tmp_path / "trials" / f"trial_{record['trial_id']:03d}" / "ray.json").read_text())
        # ran on the cluster, not on a Ray started here (Ray names the head by this machine's
        # address, so its port, a free one chosen above, identifies it)
        assert placed["gcs_address"].rsplit(":", 1)[1] == ray_head.rsplit(":", 1)[1]
        assert placed["gpu_ids"] == ""  # bo_trial_gpus 0: RecBole's gpu_id empty, a CPU trial
    import ray

    assert not ray.is_initialized()  # the search disconnected; the cluster is the fixture's to stop
