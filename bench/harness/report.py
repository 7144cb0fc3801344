"""Renders harness results files (bench/results/<scenario>.json) as Markdown tables: one table per
scenario with lakeloop, the anchor and its version, the ratio in words, the machine, the date and
the command. Groundwork for bench/RESULTS.md, which is generated, never edited by hand.

Usage: .venv/bin/python bench/harness/report.py bench/results/features.json [...] [--out FILE]
"""
import argparse
import json
import sys
from pathlib import Path


def _num(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}"


def verdict(fig):
    r = fig.get("ratio")
    if r is None:
        missing = [f"lakeloop: {fig['lakeloop_status']}" if fig.get("lakeloop") is None else None,
                   f"anchor: {fig['anchor_status']}" if fig.get("anchor") is None else None]
        return "not compared (" + ", ".join(m for m in missing if m) + ")"
    if r >= 1:
        return f"lakeloop {r:.3g}x better"
    return f"**lakeloop slower**: {1 / r:.3g}x worse"


def render(data):
    m = data.get("machine", {})
    lines = [f"### {data['scenario']}", "",
             f"`{data['command']}` — {data['started_at']}, commit {str(data.get('git_commit'))[:10]}, "
             f"{m.get('cpu_model')} x {m.get('cpus')} cpus, {m.get('memory_gib')} GiB, load average "
             f"{_num((m.get('load_avg_at_start') or [None])[0])} at start", "",
             "| figure | unit | lakeloop | anchor | anchor version | ratio |",
             "|---|---|---|---|---|---|"]
    for f in data["figures"]:
        lines.append(f"| {f['name']} | {f['unit']} ({f['better']} is better) | {_num(f['lakeloop'])} "
                     f"| {_num(f['anchor'])} | {f.get('anchor_name') or ''} "
                     f"{f.get('anchor_version') or ''} | {verdict(f)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    text = "\n".join(render(json.loads(Path(f).read_text())) for f in a.files)
    if a.out:
        Path(a.out).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
