"""trm on Modal: the repository's Dockerfile as the image, the same `trm` commands as on a
workstation (README, "Training across machines").

    modal run deploy/modal_app.py::prepare_dataset
    modal run deploy/modal_app.py::download_weights
    modal run deploy/modal_app.py::train --config configs/maze-hard.toml
    modal run deploy/modal_app.py::train --resume runs/maze-hard-1767000000
    modal run deploy/modal_app.py::train_multinode --config configs/maze-hard.toml
    modal run deploy/modal_app.py::evaluate --checkpoint runs/RUN/checkpoints/step_N/model.safetensors --config runs/RUN/config.toml
    modal deploy deploy/modal_app.py   # serve: the API and the web app

Datasets and weights live on the `trm-data` volume (mounted at /opt/trm/data, where the
configs' `data/...` paths point), runs on `trm-runs` (/opt/trm/runs).
"""

import os
import socket
import subprocess
import time
from pathlib import Path

import modal

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = "/opt/trm"
image = modal.Image.from_dockerfile(ROOT / "Dockerfile", context_dir=ROOT)
app = modal.App("trm", image=image)
data = modal.Volume.from_name("trm-data", create_if_missing=True)
runs = modal.Volume.from_name("trm-runs", create_if_missing=True)
VOLUMES = {f"{WORKDIR}/data": data, f"{WORKDIR}/runs": runs}
DAY = 24 * 60 * 60
NODES = 2  # containers of `train_multinode`, 4 GPUs each
SSH_PORT = 2222


def sh(*args: str, env: dict | None = None) -> None:
    """Runs one command in /opt/trm, echoing it; fails the function if it fails."""
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=WORKDIR, check=True, env={**os.environ, **(env or {})})


def train_args(config: str, resume: str) -> list[str]:
    """`trm train`'s run arguments: a new run from CONFIG, or --resume RUN."""
    return ["--resume", resume] if resume else ["--config", config, "--out", "runs"]


@app.function(volumes=VOLUMES, timeout=60 * 60)
def prepare_dataset(out: str = "data/maze-30x30-hard-1k"):
    """The benchmark from the Hugging Face hub, in the npy layout the configs read."""
    sh("trm", "prepare-dataset", "--out", out)
    data.commit()


@app.function(volumes=VOLUMES, timeout=60 * 60)
def download_weights(repo: str = "YuvrajSingh9886/maze-hard-trm", file: str = "step_32550"):
    """A published checkpoint and its config, into data/weights/."""
    sh("trm", "download-weights", "--repo", repo, "--file", file, "--out", f"data/weights/{repo.split('/')[-1]}")
    data.commit()


@app.function(gpu="A100-80GB:4", volumes=VOLUMES, timeout=DAY)
def train(config: str = "configs/maze-hard.toml", resume: str = ""):
    """One machine, 4 GPUs: one data-parallel worker each (local all-reduce, no MPI)."""
    runs.reload()
    try:
        sh("trm", "train", "--backend", "cuda", "--devices", "0,1,2,3", *train_args(config, resume))
    finally:
        runs.commit()


def wait_for_port(host: str, port: int, seconds: float) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1)


@app.function(gpu="A100-80GB:4", volumes=VOLUMES, timeout=DAY)
@modal.experimental.clustered(size=NODES)
def train_multinode(config: str = "configs/maze-hard.toml", resume: str = ""):
    """NODES machines of 4 GPUs: one `trm train` per machine started by mpirun from rank 0
    (over ssh: the containers have no other launcher), MPI summing the gradients across
    them. Rank 0 writes the run; datasets must be on the data volume (a config with
    `[data] dir`), which every container mounts."""
    info = modal.experimental.get_cluster_info()
    hosts = getattr(info, "container_ipv4_ips", None) or info.container_ips
    # The image's own host key and a key pair made here: the containers of one cluster share
    # this function call, and sshd listens on the cluster's private network only.
    ssh = Path("/root/.ssh")
    ssh.mkdir(mode=0o700, exist_ok=True)
    key = ssh / "id_ed25519"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "trm-cluster")
    runs.reload()
    if info.rank != 0:
        # Rank 0's public key lets it in: it is handed over on the runs volume.
        pub = Path(WORKDIR) / "runs" / ".cluster" / "id_ed25519.pub"
        for _ in range(120):
            runs.reload()
            if pub.exists():
                break
            time.sleep(5)
        (ssh / "authorized_keys").write_text(pub.read_text())
        sh("ssh-keygen", "-A")
        os.makedirs("/run/sshd", exist_ok=True)
        sh("/usr/sbin/sshd", "-p", str(SSH_PORT))
        # Serve until rank 0's sshd goes away (its mpirun has ended).
        wait_for_port(hosts[0], SSH_PORT, 30 * 60)
        while True:
            try:
                socket.create_connection((hosts[0], SSH_PORT), timeout=5).close()
            except OSError:
                return
            time.sleep(30)
    shared = Path(WORKDIR) / "runs" / ".cluster"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "id_ed25519.pub").write_text((ssh / "id_ed25519.pub").read_text())
    runs.commit()
    sh("ssh-keygen", "-A")
    os.makedirs("/run/sshd", exist_ok=True)
    sh("/usr/sbin/sshd", "-p", str(SSH_PORT))
    for host in hosts[1:]:
        wait_for_port(host, SSH_PORT, 30 * 60)
    ssh_args = f"-p {SSH_PORT} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    try:
        sh(
            "mpirun", "-n", str(len(hosts)), "--host", ",".join(f"{h}:1" for h in hosts),
            "--mca", "plm_rsh_args", ssh_args,
            "-x", "PATH", "-x", "LD_LIBRARY_PATH", "-x", "CUDA_PATH", "-x", "RUST_LOG",
            "--wdir", WORKDIR,
            "trm", "train", "--backend", "cuda", "--devices", "0,1,2,3", *train_args(config, resume),
        )
    finally:
        runs.commit()


@app.function(gpu="A100-80GB:2", volumes=VOLUMES, timeout=4 * 60 * 60)
def evaluate(checkpoint: str, config: str, data_dir: str = "data/maze-30x30-hard-1k"):
    """A checkpoint on the test split (GPU 0) and the train split (GPU 1), side by side."""
    runs.reload()
    jobs = [
        subprocess.Popen(
            ["trm", "eval", "--backend", "cuda", "--checkpoint", checkpoint, "--config", config,
             "--data", data_dir, "--split", split],
            cwd=WORKDIR, env={**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)},
        )
        for gpu, split in enumerate(["test", "train"])
    ]
    if any(job.wait() != 0 for job in jobs):
        raise RuntimeError("trm eval failed")


@app.function(volumes=VOLUMES, timeout=DAY, min_containers=0)
@modal.concurrent(max_inputs=100)
@modal.web_server(8080, startup_timeout=120)
def serve():
    """The API and the web app (CPU: the committed size-general model), as `trm serve`."""
    subprocess.Popen(["trm", "serve", "--addr", "0.0.0.0:8080", "--allowed-host", "*"], cwd=WORKDIR)
