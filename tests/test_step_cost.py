"""benchmarks.step_cost's CPU peak memory: a child's own growth, not its parent's peak."""

import multiprocessing as mp

from benchmarks.step_cost import peak_rss_mib

MIB = 2**20


def _grow_by(mib, queue):
    base = peak_rss_mib()
    block = bytearray(b"\x01") * (mib * MIB)  # filled, so every page is resident
    queue.put(peak_rss_mib() - base)
    del block


def test_a_spawned_childs_peak_is_its_own_after_a_bigger_parent():
    # The parent peaks well above what the child will use: Linux's ru_maxrss would hand
    # that peak to the spawned child and its growth would read 0 (the bf16 rows' bug).
    parent_block = bytearray(b"\x01") * (600 * MIB)
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_grow_by, args=(150, queue))
    child.start()
    growth = queue.get(timeout=120)
    child.join()
    del parent_block
    assert 140 <= growth <= 200
