"""Weights & Biases: online only when asked for, and then the run's files recorded as artifacts.

`WANDB_MODE` decides, read once per use: `online` (or `run`) uploads; anything else, unset included, never
touches the network. The wandb logger config reads it through two resolvers, because Lightning's WandbLogger
cannot take both from the environment itself: `offline=true` makes it set WANDB_MODE=dryrun (which would
override a `disabled`), and `log_model` (the checkpoint as an artifact at the end of fitting) is refused offline.

    offline: ${wandb_offline:}     # true unless WANDB_MODE is online or disabled
    log_model: ${wandb_online:}    # the checkpoint as a W&B artifact when the run is online

Files a later process makes (the ONNX export) are recorded by the command line, into the same W&B run when
`WANDB_RUN_ID` names it (wandb.init reads it; WandbLogger resumes with resume="allow"):

    python -m train.wandb_online build/export/model.onnx build/export/model-card.json --name onnx --type model
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

ONLINE_MODES = {"online", "run"}
PROJECT = "cifar-classifier"  # the W&B project configs/logger/wandb.yaml logs to


def wandb_mode() -> str:
    """The mode W&B will run in: online, offline or disabled (unset is offline: nothing here waits on a network)."""
    mode = os.environ.get("WANDB_MODE", "offline").strip().lower()
    if mode in ONLINE_MODES:
        return "online"
    return "disabled" if mode == "disabled" else "offline"


def is_online() -> bool:
    return wandb_mode() == "online"


OmegaConf.register_new_resolver("wandb_online", is_online, replace=True)
OmegaConf.register_new_resolver("wandb_offline", lambda: wandb_mode() == "offline", replace=True)


def log_files(
    files: Sequence[Path], name: str, kind: str, project: str = PROJECT, metadata: dict | None = None
) -> bool:
    """Record `files` as one W&B artifact `name` of type `kind`; does nothing (returns False) unless online."""
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"cannot record missing files as a W&B artifact: {', '.join(missing)}")
    if not is_online():
        return False
    import wandb  # only when uploading: offline, nothing of wandb is even imported

    run = wandb.run or wandb.init(project=project, job_type="export", resume="allow")
    artifact = wandb.Artifact(name=name, type=kind, metadata=metadata or {})
    for f in files:
        artifact.add_file(str(f), name=Path(f).name)
    run.log_artifact(artifact, aliases=["latest"])
    run.finish()
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="the files of the artifact")
    parser.add_argument("--name", required=True, help="the artifact's name, e.g. onnx")
    parser.add_argument("--type", default="model", dest="kind", help="the artifact's type (default: model)")
    parser.add_argument("--project", default=PROJECT, help=f"the W&B project (default: {PROJECT})")
    args = parser.parse_args(argv)
    if log_files(args.files, args.name, args.kind, args.project):
        print(f"W&B: recorded {len(args.files)} file(s) as artifact {args.name!r}")
    else:
        print(f"W&B is {wandb_mode()} (WANDB_MODE): artifact {args.name!r} not recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
