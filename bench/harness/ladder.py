"""Size ladder: run a step at sizes s1 < s2 < ..., each as a child process under a time budget and
a memory budget (peak RSS of the whole process tree, sampled from /proc; the tree is killed beyond
either budget), and report the largest size that finished.

RSS is summed over the processes of the tree, so pages shared between forked workers count once per
process: a conservative (high) figure, the same rule for every side."""
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Budget:
    seconds: float = 600.0
    memory_mb: float = 8192.0

    def as_dict(self):
        return {"seconds": self.seconds, "memory_mb": self.memory_mb}


def _tree_rss_bytes(sid):
    """Sum of RSS of every process in session `sid` (the measured command is started in its own
    session, so its children, grandchildren and workers are found even after reparenting)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[3]) != sid:  # fields[3] is the session id (field 6 of stat)
                continue
            with open(f"/proc/{name}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError):
            continue
    return total


def _kill_session(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_measured(cmd, budget, env=None, cwd=None, poll_s=0.05):
    """Runs cmd in its own session under `budget`. Returns a dict: status (ok | failed |
    over_time | over_memory), seconds, peak_rss_mb, returncode, result (the JSON after the last
    "RESULT " line the command printed, if any) and the tail of its output."""
    out = tempfile.TemporaryFile()
    t0 = time.monotonic()
    proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, env=env,
                            cwd=cwd, start_new_session=True)
    peak = 0
    status = None
    limit = budget.memory_mb * 1024 * 1024
    while proc.poll() is None:
        peak = max(peak, _tree_rss_bytes(proc.pid))
        if peak > limit:
            status = "over_memory"
        elif time.monotonic() - t0 > budget.seconds:
            status = "over_time"
        if status:
            _kill_session(proc)
            break
        time.sleep(poll_s)
    seconds = time.monotonic() - t0
    if status is None:
        status = "ok" if proc.returncode == 0 else "failed"
    out.seek(0)
    text = out.read().decode(errors="replace")
    out.close()
    result = None
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    return {"status": status, "seconds": round(seconds, 3), "peak_rss_mb": round(peak / 2**20, 1),
            "returncode": proc.returncode, "result": result,
            "output_tail": None if status == "ok" else text[-2000:]}


def run_ladder(sizes, step, budget, label="", stop_on_failure=True, log=print):
    """For each size (ascending), step(size) returns either a command (list) to run measured under
    `budget`, a dict(cmd=..., env=..., cwd=...), or an already-measured result dict (with a
    "status"). The ladder stops at the first size that does not finish (a larger one would not
    either). Returns {"budget", "steps": [{size, status, seconds, peak_rss_mb, result}],
    "largest_finished"}."""
    steps = []
    largest = None
    for size in sorted(sizes):
        spec = step(size)
        if isinstance(spec, dict) and "status" in spec:
            r = spec
        else:
            if isinstance(spec, dict):
                r = run_measured(spec["cmd"], budget, env=spec.get("env"), cwd=spec.get("cwd"))
            else:
                r = run_measured(spec, budget)
        r = dict(r, size=size)
        steps.append(r)
        if log:
            log(f"ladder {label} size={size}: {r['status']} in {r.get('seconds')} s, "
                f"peak {r.get('peak_rss_mb')} MB")
        if r["status"] == "ok":
            largest = size
        elif stop_on_failure:
            break
    return {"budget": budget.as_dict(), "steps": steps, "largest_finished": largest}
