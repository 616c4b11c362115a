"""Training's paths: the repository's layout lives in `contract.paths`."""

from contract.paths import MODELS_DIR, PROCESSED_DIR, PROJECT_ROOT, RAW_DIR

__all__ = ["MODELS_DIR", "PROCESSED_DIR", "PROJECT_ROOT", "RAW_DIR"]
