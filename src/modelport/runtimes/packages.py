"""Model files carried by installed Python packages, found without any network access.

A model package either exposes ``get_model_path()`` (a directory or file inside the
package) or ``assemble()`` (joins the parts it carries into one file, checked against its
SHA-256, in a cache directory, once). Dashes in the package name become underscores in the
module name.
"""

from __future__ import annotations

import importlib
from pathlib import Path


def resolve_model_package(name: str) -> Path:
    module = importlib.import_module(name.replace("-", "_"))
    for attribute in ("get_model_path", "assemble"):
        locate = getattr(module, attribute, None)
        if callable(locate):
            return Path(locate())
    raise LookupError(f"package '{name}' has neither get_model_path() nor assemble()")


def model_file(model_path: str | None, model_package: str | None) -> str:
    """The file (or directory) a local provider loads."""
    if model_path is not None:
        return model_path
    if model_package is None:
        raise LookupError("neither model_path nor model_package is set")
    return str(resolve_model_package(model_package))
