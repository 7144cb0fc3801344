"""Results writer: bench/results/<scenario>.json with the machine, the git commit, start and end
timestamps, and every figure beside its anchor's figure and the ratio.

A figure's ratio is lakeloop's advantage: anchor/lakeloop for figures where lower is better
(latency, seconds, memory), lakeloop/anchor where higher is better (throughput). Above 1 lakeloop is
better; below 1 it is slower, and the file says so. A side that was not measured (not built yet,
anchor missing, over budget) is null with its status, and the ratio is null: never a made-up number."""
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .env import ROOT

NOT_BUILT = "not built yet"


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info():
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"host": platform.node(), "kernel": platform.release(), "cpu_model": cpu,
            "cpus": os.cpu_count(), "memory_gib": mem, "python": platform.python_version()}


@dataclass
class Figure:
    name: str
    unit: str
    better: str  # "lower" or "higher"
    lakeloop: float = None
    anchor: float = None
    anchor_name: str = None
    anchor_version: str = None
    lakeloop_status: str = "ok"
    anchor_status: str = "ok"
    details: dict = field(default_factory=dict)

    def ratio(self):
        if self.lakeloop in (None, 0) or self.anchor in (None, 0):
            return None
        r = self.anchor / self.lakeloop if self.better == "lower" else self.lakeloop / self.anchor
        return round(r, 3)

    def as_dict(self):
        d = {"name": self.name, "unit": self.unit, "better": self.better,
             "lakeloop": self.lakeloop, "lakeloop_status": self.lakeloop_status,
             "anchor": self.anchor, "anchor_name": self.anchor_name,
             "anchor_version": self.anchor_version, "anchor_status": self.anchor_status,
             "ratio": self.ratio()}
        if self.details:
            d["details"] = self.details
        return d


class Results:
    """Collects a scenario's figures; write() puts them in bench/results/<scenario>.json."""

    def __init__(self, scenario, command, out_dir=None, config=None):
        self.scenario = scenario
        self.command = command
        self.out_dir = Path(out_dir) if out_dir else ROOT / "bench" / "results"
        self.config = config or {}
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.load_at_start = os.getloadavg()
        # The code that runs is the code at the start (a commit made during a long run is not it).
        self.commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        self.dirty = bool(dirty) if dirty is not None else None
        self.figures = []
        self.extra = {}

    def add(self, figure):
        self.figures.append(figure)
        r = figure.ratio()
        print(f"[{self.scenario}] {figure.name}: lakeloop={figure.lakeloop} "
              f"({figure.lakeloop_status}) anchor={figure.anchor} ({figure.anchor_status}) "
              f"{figure.unit} ratio={r}", flush=True)
        return figure

    def as_dict(self):
        return {
            "scenario": self.scenario,
            "command": self.command,
            "started_at": self.started,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": self.commit,
            "git_dirty_at_start": self.dirty,
            "machine": dict(machine_info(), load_avg_at_start=self.load_at_start,
                            load_avg_at_end=os.getloadavg()),
            "config": self.config,
            "ratio_meaning": "lakeloop's advantage: >1 lakeloop better, <1 lakeloop worse, "
                             "null when a side was not measured",
            "figures": [f.as_dict() for f in self.figures],
            **self.extra,
        }

    def write(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.scenario}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        print(f"[{self.scenario}] wrote {path}", flush=True)
        return path
