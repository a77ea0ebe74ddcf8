#!/usr/bin/env python3
"""Shows that the fault scenarios guard each of wsctl-client's promises: turns off one of
resume, gap refill, duplicate drop or publish retry in the crate's sources, builds the faults
example, runs the scenarios against it; every such copy must fail at least one. The sources are
put back afterwards, whatever happens. Needs a running `wsctl dev` with raised limits (README):
  WSCTL_URL=ws://… WSCTL_BASE=http://… python3 clients/rust/examples/faults/mutants.py
"""
import os
import pathlib
import subprocess
import sys

crate = pathlib.Path(__file__).resolve().parents[2]
root = crate.parents[1]
MUTANTS = {
    "resume": ("src/channel.rs", 'frame["since"] = json!(last);', "let _ = last;"),
    "gap refill": (
        "src/channel.rs",
        "fn ask_for_gap(&mut self, link: &mut dyn Link) {\n",
        "fn ask_for_gap(&mut self, link: &mut dyn Link) {\n        if self.held.len() < usize::MAX {\n            return;\n        }\n",
    ),
    "duplicate drop": (
        "src/channel.rs",
        "            return; // already delivered\n",
        "            let dup = m.clone();\n            self.listeners.retain(|l| l.send(dup.clone()).is_ok());\n            return;\n",
    ),
    "publish retry": (
        "src/publishes.rs",
        "        for p in &mut self.queue {\n            p.seq = None;\n        }\n",
        "        self.queue.retain(|p| p.seq.is_none());\n",
    ),
}
scenarios = os.environ.get("WSCTL_SCENARIOS", "gaps,drops").split(",")
env = {**os.environ, "WSCTL_MESSAGES": os.environ.get("WSCTL_MESSAGES", "600")}
target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
survivors = 0
for name, (file, old, new) in MUTANTS.items():
    path = crate / file
    source = path.read_text()
    if old not in source:
        sys.exit(f'{file} no longer contains the code "{name}" turns off: update this file')
    try:
        path.write_text(source.replace(old, new, 1))
        subprocess.run(
            ["cargo", "build", "-q", "-p", "wsctl-client", "--example", "faults"],
            cwd=root, check=True,
        )
    finally:
        path.write_text(source)
    caught = []
    for scenario in scenarios:
        run = subprocess.run(
            [target / "debug/examples/faults", scenario],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if run.returncode != 0:
            caught.append(f"{scenario}: {run.stderr.strip()[:200]}")
    survivors += not caught
    print(f"{name} off: " + (f"caught by {' | '.join(caught)}" if caught else "NOT CAUGHT"), flush=True)
subprocess.run(["cargo", "build", "-q", "-p", "wsctl-client", "--example", "faults"], cwd=root, check=True)
sys.exit(1 if survivors else 0)
