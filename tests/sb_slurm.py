"""A real single-node Slurm for the tests: munged, slurmctld and slurmd started as root under a temporary
folder (Debian's ``slurm-wlm`` and ``munge``; ``make os-packages`` installs them as root), stopped after."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

INSTALL = "apt-get install slurm-wlm munge (as root; `make os-packages` does it)"


def why_not() -> str | None:
    """Why a Slurm cluster cannot be started here (None: it can)."""
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not shutil.which(b)]
    if missing:
        return f"Slurm / munge not installed ({', '.join(missing)} missing): {INSTALL}"
    if os.geteuid() != 0:
        return "starting munged, slurmctld and slurmd needs root (CI runs the suite as root)"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (reinstall munge: apt-get install --reinstall munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_ok() -> bool:
    try:  # both return at once: without munged, munge fails on its socket
        enc = subprocess.run(["munge", "-n"], capture_output=True)
        return enc.returncode == 0 and subprocess.run(["unmunge"], input=enc.stdout, capture_output=True).returncode == 0
    except OSError:
        return False


@contextmanager
def slurm_cluster(root: Path) -> Iterator[dict[str, str]]:
    """Start a one-node cluster (this host, all its CPUs, no GPUs); yields the environment (``SLURM_CONF``)
    that the Slurm commands need."""
    host = socket.gethostname().split(".")[0]
    for d in ("state", "spool", "log", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=scganbench", f"SlurmctldHost={host}", "AuthType=auth/munge", "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SwitchType=switch/none", "MpiDefault=none",
        "SchedulerType=sched/builtin", "SchedulerParameters=kill_invalid_depend", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "SlurmUser=root", "SlurmdUser=root", f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/run/slurmctld.pid", f"SlurmdPidFile={root}/run/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}", "ReturnToService=2",
        "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none", "MinJobAge=600",
        f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started_munge = None
    if not _munge_ok():
        for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
        started_munge = subprocess.run(["munged", "--force"], capture_output=True, text=True)
        for _ in range(600):  # munged is up within a second (a minute allowed for a loaded machine)
            if _munge_ok():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"munged did not start: {started_munge.stderr}")
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
    subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True)
    try:
        for _ in range(1500):  # the node registers within seconds (5 minutes allowed for a loaded machine)
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if "idle" in out:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the Slurm node did not come up: {(root / 'log' / 'slurmctld.log').read_text()[-2000:]}")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            with suppress(OSError, ValueError):  # a daemon that already stopped
                os.kill(int((root / "run" / pid_file).read_text()), signal.SIGTERM)
