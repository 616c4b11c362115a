"""Training: CIFAR-10 data preparation, Lightning module and data module, Hydra entry point."""
