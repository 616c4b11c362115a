"""The Vertex AI training job (cloudbuilds/vertex/train-job.yaml, submitted by cloudbuilds/submit-vertex-train.sh):
a CustomJobSpec whose every field the API knows, on a GPU machine, running the train image from the repository's
registry path, pulling from the DVC remote and training the shipped recipe with W&B online. No network: the
submission runs against a stand-in `gcloud`."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.train.conftest import task_config
from train.secret_env import VERSION_NAME

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudbuilds" / "vertex" / "train-job.yaml"
SUBMIT = ROOT / "cloudbuilds" / "submit-vertex-train.sh"
PROJECT = "my-project-123"
PLACEHOLDERS = {"PROJECT_ID", "REGION", "REPOSITORY", "IMAGE_TAG", "RUN_ID"}

# The fields of the Vertex AI v1 messages the spec may use (google-cloud-sdk 528's aiplatform v1 messages, the
# ones `gcloud ai custom-jobs create --config` parses into): a misspelt key would otherwise be dropped silently.
FIELDS = {
    "CustomJobSpec": {
        "baseOutputDirectory", "enableDashboardAccess", "enableWebAccess", "experiment", "experimentRun", "models",
        "network", "persistentResourceId", "protectedArtifactLocationId", "reservedIpRanges", "scheduling",
        "serviceAccount", "tensorboard", "workerPoolSpecs",
    },
    "WorkerPoolSpec": {"containerSpec", "diskSpec", "machineSpec", "nfsMounts", "pythonPackageSpec", "replicaCount"},
    "MachineSpec": {"acceleratorCount", "acceleratorType", "machineType", "reservationAffinity", "tpuTopology"},
    "DiskSpec": {"bootDiskSizeGb", "bootDiskType"},
    "ContainerSpec": {"args", "command", "env", "imageUri"},
    "EnvVar": {"name", "value"},
    "Scheduling": {"disableRetries", "maxWaitDuration", "restartJobOnWorkerRestart", "strategy", "timeout"},
}  # fmt: skip
# The GPU each machine family carries (https://cloud.google.com/vertex-ai/docs/training/configure-compute).
GPU_OF_FAMILY = {"g2": {"NVIDIA_L4"}, "a2": {"NVIDIA_TESLA_A100", "NVIDIA_A100_80GB"}, "a3": {"NVIDIA_H100_80GB"},
                 "n1": {"NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_P4"}}  # fmt: skip


def submit(*, path: str | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in PLACEHOLDERS | {"DRY_RUN"}}
    environ |= env
    if path:
        environ["PATH"] = f"{path}:{environ['PATH']}"
    return subprocess.run(["bash", str(SUBMIT)], env=environ, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rendered() -> dict:
    result = submit(PROJECT_ID=PROJECT, DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def container(rendered) -> dict:
    (pool,) = rendered["workerPoolSpecs"]
    return pool["containerSpec"]


@pytest.fixture(scope="module")
def script(container) -> list[str]:
    """The job's shell script, one command a line."""
    assert container["args"][:3] == ["python", "-m", "train.secret_env"]  # the W&B key, then the script
    assert container["args"][3:5] == ["sh", "-c"]
    lines = [line.strip() for line in container["args"][5].splitlines()]
    assert lines[0] == "set -eu"  # a failed step fails the job
    return lines[1:]


def command(script: list[str], prefix: str) -> list[str]:
    (line,) = [line for line in script if line.startswith(prefix)]
    return shlex.split(line)


def check_fields(node, message: str, children: dict[str, str]) -> None:
    assert set(node) <= FIELDS[message], f"{message}: unknown {set(node) - FIELDS[message]}"
    for key, child in children.items():
        for item in node.get(key) or []:
            check_fields(item, child, {})


def test_every_key_is_a_field_of_the_api(rendered):
    check_fields(rendered, "CustomJobSpec", {})
    check_fields(rendered["scheduling"], "Scheduling", {})
    for pool in rendered["workerPoolSpecs"]:
        check_fields(pool, "WorkerPoolSpec", {})
        check_fields(pool["machineSpec"], "MachineSpec", {})
        check_fields(pool["diskSpec"], "DiskSpec", {})
        check_fields(pool["containerSpec"], "ContainerSpec", {"env": "EnvVar"})


def test_rendering_fills_every_placeholder():
    template = TEMPLATE.read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    assert used == PLACEHOLDERS
    result = submit(PROJECT_ID=PROJECT, DRY_RUN="1")
    assert "${" not in result.stdout
    # Each placeholder is one the script sets (and validates).
    for name in PLACEHOLDERS:
        assert re.search(rf"^check {name} ", SUBMIT.read_text(), re.M), name


def test_one_gpu_machine_with_a_gpu_of_its_family(rendered):
    (pool,) = rendered["workerPoolSpecs"]
    machine = pool["machineSpec"]
    assert pool["replicaCount"] == 1
    assert machine["acceleratorCount"] >= 1
    assert machine["acceleratorType"] in GPU_OF_FAMILY[machine["machineType"].split("-")[0]]
    assert re.fullmatch(r"\d+s", rendered["scheduling"]["timeout"])  # a hung run does not bill forever


def test_the_image_is_the_train_image_from_the_repositorys_registry_at_this_commit(container):
    deploy = yaml.safe_load((ROOT / "cloudbuilds" / "cloudbuild.yaml").read_text())["substitutions"]
    build = yaml.safe_load((ROOT / "cloudbuilds" / "train-image.yaml").read_text())
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    registry = f"{deploy['_REGION']}-docker.pkg.dev/{PROJECT}/{deploy['_REPOSITORY']}"
    assert container["imageUri"] == f"{registry}/train:{sha.strip()}"
    # ... which is what cloudbuilds/train-image.yaml pushes: the same names, the train Dockerfile, the CUDA torch.
    subs = build["substitutions"]
    assert (subs["_REGION"], subs["_REPOSITORY"]) == (deploy["_REGION"], deploy["_REPOSITORY"])
    assert subs["_TRAIN_IMAGE"] == "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/train"
    (step,) = [s for s in build["steps"] if s["id"] == "build-train"]
    assert "--file=docker/train.Dockerfile" in step["args"]
    assert "--build-arg=TORCH_INDEX=https://pypi.org/simple" in step["args"]  # PyPI's Linux torch is the CUDA one
    assert "--tag=${_TRAIN_IMAGE}:$SHORT_SHA" in step["args"]
    assert build["images"] == ["${_TRAIN_IMAGE}:$SHORT_SHA"]


def test_the_image_entry_point_pulls_from_the_gcs_dvc_remote_first(container):
    assert "command" not in container  # keeps the image's ENTRYPOINT: docker/train-entrypoint.sh
    dockerfile = (ROOT / "docker" / "train.Dockerfile").read_text()
    assert 'ENTRYPOINT ["sh", "/app/docker/train-entrypoint.sh"]' in dockerfile
    entrypoint = (ROOT / "docker" / "train-entrypoint.sh").read_text()
    assert re.search(r"^dvc pull .*\$remote_args$", entrypoint, re.M)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DVC_REMOTE"] == "gcs"
    dvc_config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"""\['remote "gcs"'\]\s+url = gs://cifar-classifier-dvc/store""", dvc_config)


def test_the_script_trains_the_shipped_gpu_recipe_with_wandb_online(script):
    train = command(script, "python -m train ")
    cfg = task_config(train[3:])
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.devices == 1
    assert cfg.model.arch_kwargs.max_pool is False  # the shipped network, not a stand-in
    assert cfg.resume is False  # a fresh machine: nothing to resume, and never a stale checkpoint
    assert cfg.logger.wandb.offline is False
    assert cfg.logger.wandb.log_model is True  # the checkpoint becomes a W&B artifact
    assert "dvc repro prepare" in script  # data/processed from the pulled data/raw (a no-op when pulled already)
    assert script.index("dvc repro prepare") < script.index(" ".join(train))


def test_the_script_exports_that_runs_checkpoint_and_records_the_onnx_files(script):
    from export.__main__ import CARD, FP32, INT8

    train = command(script, "python -m train ")
    cfg = task_config(train[3:])
    export = command(script, "python -m export ")
    ckpt_dir = Path(cfg.paths.ckpt_root).relative_to(cfg.paths.root) / cfg.run_name
    assert export[3] == str(ckpt_dir / "last.ckpt")
    out_dir = Path(export[export.index("--out-dir") + 1])
    record = command(script, "python -m train.wandb_online ")
    files = [arg for arg in record[3:] if not arg.startswith("--") and arg not in {"onnx", "model"}]
    assert files == [str(out_dir / name) for name in (FP32, INT8, CARD)]
    assert record[record.index("--name") + 1] == "onnx"


def test_wandb_is_online_into_one_run_with_the_key_from_secret_manager(container):
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["WANDB_MODE"] == "online"  # the image's default is offline
    assert "WANDB_API_KEY" not in env  # never the key itself: anyone who can list jobs reads the spec
    assert VERSION_NAME.match(env["WANDB_API_KEY_SECRET"])
    assert env["WANDB_API_KEY_SECRET"].startswith(f"projects/{PROJECT}/secrets/")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", env["WANDB_RUN_ID"])


def test_submission_runs_gcloud_with_the_rendered_spec(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gcloud"
    # Records its arguments and the config it was given, as `gcloud ai custom-jobs create` would read it.
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{tmp_path}/args"\n'
        'for a in "$@"; do case "$a" in --config=*) cp "${a#--config=}" "'
        + str(tmp_path)
        + '/config.yaml";; esac; done\n'
    )
    fake.chmod(0o755)
    result = submit(path=str(bin_dir), PROJECT_ID=PROJECT, RUN_ID="ship-gpu-test")
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:3] == ["ai", "custom-jobs", "create"]
    assert f"--project={PROJECT}" in args
    assert "--region=europe-west1" in args
    assert "--display-name=cifar-ship-gpu-test" in args
    spec = yaml.safe_load((tmp_path / "config.yaml").read_text())
    env = {e["name"]: e["value"] for e in spec["workerPoolSpecs"][0]["containerSpec"]["env"]}
    assert env["WANDB_RUN_ID"] == "ship-gpu-test"


@pytest.mark.parametrize(
    ("env", "message"),
    [({}, "PROJECT_ID"), ({"PROJECT_ID": "Bad_Project"}, "PROJECT_ID"),
     ({"PROJECT_ID": PROJECT, "REGION": "europe-west1; rm -rf /"}, "REGION"),
     ({"PROJECT_ID": PROJECT, "IMAGE_TAG": "latest"}, "IMAGE_TAG")],
)  # fmt: skip
def test_submission_refuses_a_missing_or_malformed_name_before_calling_gcloud(tmp_path, env, message):
    fake = tmp_path / "gcloud"
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path}/called\n")
    fake.chmod(0o755)
    result = submit(path=str(tmp_path), **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "called").exists()


def test_the_jobs_shell_script_parses(container):
    result = subprocess.run(["sh", "-n", "-c", container["args"][5]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
