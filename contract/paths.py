"""Where the pipeline's stages hand files to each other, independent of the working directory.

The serve image has no repository around it: the service finds its model through its own settings
(`serve/settings.py`), never through these paths.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAW_DIR = PROJECT_ROOT / "data" / "raw"
PROCESSED_DIR = PROJECT_ROOT / "data" / "processed"
MODELS_DIR = PROJECT_ROOT / "models"
SHIPPED_DIR = PROJECT_ROOT / "shipped"
