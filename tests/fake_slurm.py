"""Fake SLURM commands for testing the SLURM profile without a cluster.

`install(bindir, state)` writes sbatch, srun, sacct, squeue, scancel and sinfo into bindir;
each runs this file. sbatch records its arguments (one JSON line per call in state/sbatch.jsonl)
and runs the job script locally in the background, as a cluster node would, with SLURM's job
environment (SLURM_JOB_ID; SLURM_GPUS when GPUs were asked for). srun records its arguments and
runs the command after its options. sacct/squeue report the jobs' states from state/; sinfo
lists two partitions, cpu (the default) and gpu.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "squeue", "scancel", "sinfo")
PARTITIONS = ("cpu*", "gpu")  # sinfo -o %P; * marks the default partition


def install(bindir: Path, state: Path) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    for cmd in COMMANDS:
        script = bindir / cmd
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {cmd} "{state}" "$@"\n')
        script.chmod(0o755)


def recorded(state: Path, cmd: str) -> list[list[str]]:
    path = state / f"{cmd}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _record(state: Path, cmd: str, argv: list[str]) -> None:
    with open(state / f"{cmd}.jsonl", "a") as f:
        f.write(json.dumps(argv) + "\n")


def _option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` (last one wins)."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def sbatch(state: Path, argv: list[str]) -> int:
    _record(state, "sbatch", argv)
    counter = state / "next_id"
    jobid = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(jobid + 1))
    wrap = _option(argv, "--wrap")
    script = wrap if wrap is not None else (sys.stdin.read() if argv and argv[-1] == "/dev/stdin" else None)
    if script is None:
        print("sbatch: error: fake sbatch needs --wrap or a script on /dev/stdin", file=sys.stderr)
        return 1
    name = _option(argv, "--job-name") or _option(argv, "-J") or ""
    (state / f"{jobid}.name").write_text(name)
    env = dict(os.environ, SLURM_JOB_ID=str(jobid), SLURM_JOBID=str(jobid), SLURM_JOB_NAME=name)
    gpus = _option(argv, "--gpus")
    if gpus:
        env["SLURM_GPUS"] = gpus
    cpus = _option(argv, "--cpus-per-task") or _option(argv, "-c")
    if cpus:
        env["SLURM_CPUS_PER_TASK"] = cpus
    log = _option(argv, "--output") or _option(argv, "-o") or os.devnull
    log = log.replace("%j", str(jobid))
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    rc = state / f"{jobid}.rc"
    runner = f'{script}\necho $? > "{rc}.tmp" && mv "{rc}.tmp" "{rc}"\n'
    with open(log, "a") as out:
        proc = subprocess.Popen(["/bin/sh", "-c", runner], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (state / f"{jobid}.pid").write_text(str(proc.pid))
    print(jobid)  # --parsable
    return 0


def srun(state: Path, argv: list[str]) -> int:
    _record(state, "srun", argv)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1  # options are all --opt=value or single flags (-n1) in the jobstep's calls
    if i == len(argv):
        return 1
    return subprocess.call(argv[i:] if len(argv) - i > 1 else ["/bin/sh", "-c", argv[i]])


def _states(state: Path, name: str | None) -> list[str]:
    lines = []
    for f in sorted(state.glob("*.name")):
        jobid = f.stem
        if name and f.read_text() != name:
            continue
        rc = state / f"{jobid}.rc"
        if (state / f"{jobid}.cancelled").exists():
            status = "CANCELLED"
        elif rc.exists():
            status = "COMPLETED" if rc.read_text().strip() == "0" else "FAILED"
        else:
            status = "RUNNING"
        lines.append(f"{jobid}|{status}")
    return lines


def query(state: Path, cmd: str, argv: list[str]) -> int:
    _record(state, cmd, argv)
    print("\n".join(_states(state, _option(argv, "--name"))))
    return 0


def scancel(state: Path, argv: list[str]) -> int:
    _record(state, "scancel", argv)
    for jobid in [a for a in argv if a.isdigit()]:
        (state / f"{jobid}.cancelled").write_text("")
        pid = state / f"{jobid}.pid"
        if pid.exists():
            try:
                os.killpg(int(pid.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    return 0


if __name__ == "__main__":
    command, state_dir, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    if command == "sbatch":
        sys.exit(sbatch(state_dir, args))
    if command == "srun":
        sys.exit(srun(state_dir, args))
    if command in ("sacct", "squeue"):
        sys.exit(query(state_dir, command, args))
    if command == "sinfo":
        _record(state_dir, "sinfo", args)
        print("\n".join(("PARTITION",) + PARTITIONS))
        sys.exit(0)
    sys.exit(scancel(state_dir, args))
