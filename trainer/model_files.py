"""The files a user points the model at: which names in a folder are images, and which SavedModel a --model folder
means. Shared by ingestion (components/), `tokenlearner predict` (serving_client/) and `tokenlearner infer`
(inference/), which are peers and may not import each other; no imports beyond the standard library, so the REST
client still starts without TensorFlow, NumPy or Pillow.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

# File names taken as images when a folder is searched (ingestion's class folders, `infer --data`, `predict FOLDER`);
# Pillow reads them all at ingestion, the serving signature decodes JPEG, PNG, GIF and BMP and names the others in
# its refusal. Matched lower-cased, at the end of the name.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm", ".pbm", ".pnm")
SAVED_MODEL_FILE = "saved_model.pb"


class ModelDirError(ValueError):
    """--model names no SavedModel; the message names the path and what was expected."""


def choose_version(model: str, is_saved_model: bool, versions: Iterable[int], version: Optional[int]) -> str:
    """The version folder `model` means, as TF Serving's default policy picks: `model` itself when it holds
    saved_model.pb and no `version` is asked for, else `model`/`version`, else its highest numbered version.
    `versions`: the numbered sub-folders that hold a saved_model.pb, as the caller's filesystem lists them."""
    found = sorted(versions)
    base = model.rstrip("/") or model
    if version is None and is_saved_model:
        return model
    if version is not None:
        if version not in found:
            raise ModelDirError(f"--model {model}: no version {version}; found versions {found}")
        return f"{base}/{version}"
    if not found:
        raise ModelDirError(f"--model {model}: expected a SavedModel folder (with {SAVED_MODEL_FILE}) or a model base "
                            f"folder with numbered versions (<base>/<version>/{SAVED_MODEL_FILE}); found neither")
    return f"{base}/{found[-1]}"


def resolve_local_model_dir(path: str, version: Optional[int] = None) -> Path:
    """A local SavedModel folder or model base folder (``<serving>/<model_name>``) -> the version folder to load
    (`choose_version`); ModelDirError when there is none."""
    root = Path(path)
    if not root.is_dir():
        raise ModelDirError(f"--model {path}: no such folder")
    versions = [int(c.name) for c in root.iterdir() if c.name.isdigit() and (c / SAVED_MODEL_FILE).is_file()]
    return Path(choose_version(path, (root / SAVED_MODEL_FILE).is_file(), versions, version))
