#!/usr/bin/env python3
"""Probe (not part of the shim): PySyncObj WITH its file journal, a process kill inside
the journal rewrite that log compaction performs.

    python examples/real/pysyncobj/probe_journal_compaction.py DIR [K]   # run, killed
    python examples/real/pysyncobj/probe_journal_compaction.py DIR check # restart

FileJournal.deleteEntriesTo (pysyncobj/journal.py) compacts by `clear()` (the header's
last-record offset goes back to the first record) and then re-`add()`s every kept entry,
one by one, in place. This probe commits and applies N `add` commands on a single node
(journalFile + fullDumpFile, fork dump as by default), lets more commands commit while the
forked dump runs, and kills the process (os._exit, no cleanup: like SIGKILL, the mmap'd
pages already written stay in the file) after K re-adds of that rewrite. A restart then
shows how many acknowledged commands the node still has.
"""

import os
import sys
import time

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.journal import FileJournal
from pysyncobj.node import Node
from pysyncobj.transport import Transport


class NoNetwork(Transport):
    def send(self, node, message):
        return False


class Counter(SyncObj):
    def __init__(self, d):
        conf = SyncObjConf(autoTick=False, journalFile=os.path.join(d, "journal"),
                           fullDumpFile=os.path.join(d, "dump"), useFork=True,
                           logCompactionMinEntries=2 ** 62, logCompactionMinTime=10 ** 12,
                           appendEntriesPeriod=0.005, raftMinTimeout=0.02, raftMaxTimeout=0.03,
                           connectionTimeout=1.0, leaderFallbackTimeout=1.0)
        super().__init__(Node("self"), [], conf, nodeClass=Node, transportClass=NoNetwork)
        self.n = 0

    @replicated
    def add(self, k):
        self.n += k
        return self.n


def tick_until(o, cond):
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline
        o.doTick(0.002)


def apply(o, k):
    box = []
    o.add(k, callback=lambda r, e: box.append((r, e)))
    tick_until(o, lambda: box)
    assert box[0][1] == 0, box
    return box[0][0]


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    if sys.argv[-1] == "check":
        o = Counter(d)
        tick_until(o, lambda: o._isLeader() and o.isReady())
        print(f"after restart: n = {o.n} (raftLastApplied {o.raftLastApplied})")
        return
    kill_after = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    o = Counter(d)
    tick_until(o, lambda: o._isLeader() and o.isReady())
    for _ in range(5):
        apply(o, 1)
    # Slow the forked dump down so that commands commit while it runs (a big state does this).
    import pysyncobj.serializer as S
    real_replace = S.atomicReplace

    def slow_replace(a, b):
        time.sleep(0.3)
        real_replace(a, b)
    S.atomicReplace = slow_replace
    o.forceLogCompaction()
    o.doTick(0)  # forks: the child holds n = 5
    acked = 5
    for _ in range(5):  # committed and acknowledged while the dump is being written
        apply(o, 1)
        acked += 1
    print(f"acknowledged: n = {acked}; now the dump finishes and the journal is rewritten")
    sys.stdout.flush()
    state = {"in_rewrite": False, "adds": 0}
    real_add, real_del = FileJournal.add, FileJournal.deleteEntriesTo

    def add(self, *a):
        real_add(self, *a)
        if state["in_rewrite"]:
            state["adds"] += 1
            if state["adds"] >= kill_after:
                os._exit(9)  # the kill: no flush, no cleanup

    def delete_to(self, entry_to):
        state["in_rewrite"] = True
        real_del(self, entry_to)
        state["in_rewrite"] = False
    FileJournal.add, FileJournal.deleteEntriesTo = add, delete_to
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        o.doTick(0.01)
    print("the rewrite finished without the kill (K too large)")


if __name__ == "__main__":
    main()
