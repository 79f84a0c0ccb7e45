"""Say why an MPI run ended when its launcher ended every rank.

When one rank dies, MPICH's ``mpirun`` (and Open MPI's) kills every other rank with SIGKILL,
the manager included, so no rank is left to say what happened. The manager starts this small
process in a session of its own (the launcher kills the ranks' process group, not it) and
tells it on its stdin when the manager has spoken for itself (``said``: a normal end, or an
abort it printed). If that stdin closes unannounced, the manager is gone and the sentinel
writes the one line it could not: which rank ended first, which evaluations were lost, how to
resume. The line goes to the launcher's stderr (the terminal or batch log), because the ranks'
own output pipes close with the launcher.

Standard library only: it starts while the run does and must cost nothing.
"""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

LAUNCHERS = ("mpiexec", "mpirun", "prterun", "orterun")
CAUSE_SECONDS = 2.0  # a rank that ended this long before the manager did not end the run
LAUNCHER_WAIT_SECONDS = 5.0
SAID = b"said\n"


def _proc(pid: int) -> tuple[int, str]:
    """(parent pid, command name) of ``pid``, from /proc; (0, "") if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0, ""
    return int(stat[stat.rindex(")") + 2:].split()[1]), stat[stat.index("(") + 1:stat.rindex(")")]


def launcher() -> int:
    """The pid of the ``mpirun`` that started this process, if it runs on this machine (the
    parent of this rank's proxy); 0 elsewhere."""
    pid = os.getpid()
    for _ in range(4):
        pid = _proc(pid)[0]
        if pid <= 1:
            return 0
        if _proc(pid)[1].startswith(LAUNCHERS):
            return pid
    return 0


def start(run_dir: str, hint: str, unit: str = "eval_id") -> subprocess.Popen | None:
    """In the manager: start the sentinel of this run (None if it cannot start).

    Its stderr is the launcher's, opened now (the launcher may be gone by the time there is
    something to say); our own where the launcher is not on this machine."""
    mpirun = launcher()
    err = None
    try:
        err = open(f"/proc/{mpirun}/fd/2", "ab", buffering=0) if mpirun else None
    except OSError:
        mpirun = 0
    try:
        return subprocess.Popen([sys.executable, "-m", "tuner.run.sentinel", run_dir, hint,
                                 str(os.getpid()), str(mpirun), unit], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    except OSError:
        return None
    finally:
        if err is not None:
            err.close()


def said(proc: subprocess.Popen | None) -> None:
    """In the manager: it speaks for itself from here on; the sentinel ends."""
    if proc is None:
        return
    try:
        proc.stdin.write(SAID)
        proc.stdin.close()
        proc.wait(timeout=2)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass


# --- the sentinel process --------------------------------------------------------------------

def _marks(run_dir: str) -> dict[int, dict]:
    out = {}
    for p in (Path(run_dir) / ".workers").glob("w*"):
        try:
            out[int(p.name[1:])] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return out


def _watch(run_dir: str, manager: int) -> tuple[bool, list[tuple[float, list[int]]]]:
    """Wait until the manager says it spoke (True) or is gone (False), noting when each
    worker rank on this machine ended: (time, ranks) per wake-up, in order."""
    host = socket.gethostname()
    poll = select.poll()
    poll.register(0, select.POLLIN)
    fds: dict[int, int] = {}  # pidfd -> rank
    watched: set[int] = set()
    ended: list[tuple[float, list[int]]] = []
    while True:
        for rank, m in _marks(run_dir).items():
            pid = m.get("pid")
            if rank in watched or m.get("host") != host or not pid or pid == manager:
                continue
            watched.add(rank)
            try:
                fd = os.pidfd_open(pid)
            except (OSError, AttributeError):
                continue
            fds[fd] = rank
            poll.register(fd, select.POLLIN)
        ready = poll.poll(500)
        now = time.monotonic()
        batch = []
        for fd, _ in ready:
            if fd == 0:
                continue
            batch.append(fds.pop(fd))
            poll.unregister(fd)
            os.close(fd)
        if batch:
            ended.append((now, sorted(batch)))
        if any(fd == 0 for fd, _ in ready):
            data = os.read(0, 64)
            if data.startswith(SAID[:4]):
                return True, ended
            if not data:
                return False, ended


def message(run_dir: str, hint: str, manager: int, ended: list[tuple[float, list[int]]],
            now: float, unit: str = "eval_id") -> str:
    """The line the manager could not print."""
    marks = _marks(run_dir)
    causes = [(t, ranks) for t, ranks in ended if now - t <= CAUSE_SECONDS]
    if causes:
        ranks = causes[0][1]
        who = ", ".join(f"{r} (pid {marks.get(r, {}).get('pid', '?')})" for r in ranks)
        sig = {marks.get(r, {}).get("signal") for r in ranks} - {None}
        how = f"were stopped by {', '.join(sorted(sig))}" if sig else "ended"
        what = (f"MPI rank {who} {how.replace('were', 'was')}" if len(ranks) == 1
                else f"MPI ranks {who} {how} together")
        what += "; MPI then ended every rank"
    else:
        what = f"the manager (MPI rank 0, pid {manager}) was killed"
    lost = sorted(m["eval_id"] for m in marks.values() if m.get("eval_id") is not None)
    lost_text = (unit + ("s " if len(lost) > 1 else " ") + ", ".join(map(str, lost))
                 + (" were" if len(lost) > 1 else " was") + " lost") if lost \
        else f"no {'evaluation' if unit == 'eval_id' else unit} was lost"
    return f"tuner: error: {what}; {lost_text}; the run stopped ({hint})"


def main(argv: list[str]) -> int:
    run_dir, hint, manager, mpirun, unit = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    spoke, ended = _watch(run_dir, manager)
    if spoke:
        return 0
    line = message(run_dir, hint, manager, ended, time.monotonic(), unit)
    if mpirun:
        # Its stderr may be a file it writes at its own offset (``> log``): a line appended
        # before its own last words would be overwritten by them.
        try:
            select.select([os.pidfd_open(mpirun)], [], [], LAUNCHER_WAIT_SECONDS)
        except (OSError, AttributeError):
            pass
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
