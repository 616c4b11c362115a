"""`python -m train [hydra overrides]`: fit and test the model the config describes (configs/train.yaml)."""

from train.train import main

main()
