"""Pins the measured server and the load generator to different cores with taskset, so they do not
compete for one core (on 2 cores: server on cpu0, load on cpu1). --no-pin disables it."""
import os
import shutil


class Pinning:
    def __init__(self, enabled=True, server_cpus=None, load_cpus=None):
        cpus = sorted(os.sched_getaffinity(0))
        self.enabled = bool(enabled and shutil.which("taskset") and len(cpus) >= 2)
        half = max(1, len(cpus) // 2)
        self.server_cpus = server_cpus or cpus[:half]
        self.load_cpus = load_cpus or cpus[half:]

    def _wrap(self, cmd, cpus):
        if not self.enabled:
            return list(map(str, cmd))
        return ["taskset", "-c", ",".join(map(str, cpus))] + list(map(str, cmd))

    def server(self, cmd):
        """The command prefixed to run on the server's cores."""
        return self._wrap(cmd, self.server_cpus)

    def load(self, cmd):
        """The command prefixed to run on the load generator's cores."""
        return self._wrap(cmd, self.load_cpus)

    def pin_self_to_load(self):
        """Moves this (in-process measuring) Python process to the load cores."""
        if self.enabled:
            os.sched_setaffinity(0, set(self.load_cpus))

    def describe(self):
        if not self.enabled:
            return {"pinned": False}
        return {"pinned": True, "server_cpus": self.server_cpus, "load_cpus": self.load_cpus}
