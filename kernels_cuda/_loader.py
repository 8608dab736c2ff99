"""Finds and imports the compiled module kernels_cuda._ext, once.

Normally it sits next to this file (an installed package). When this package
is imported from a source tree (e.g. ``python -m pytest`` at the repository
root puts the tree first on sys.path), the compiled module is not here; then
the copy of an installed kernels_cuda further along sys.path is used, if its
INTERFACE_VERSION matches. Failure is recorded, never raised at import.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ._errors import ExtensionNotBuiltError

# Must equal kInterfaceVersion in bindings/bindings.h.
INTERFACE_VERSION = 3
_MODULE_NAME = __package__ + "._ext"


@dataclass(frozen=True)
class Extension:
    """The compiled module, or why there is none."""

    module: ModuleType | None
    path: str | None
    error: str | None


def _installed_copies() -> list[Path]:
    """_ext files of other kernels_cuda directories on sys.path, in order."""
    here = Path(__file__).resolve().parent
    found = []
    for entry in sys.path:
        package_dir = Path(entry or os.getcwd()) / __package__
        try:
            if not package_dir.is_dir() or package_dir.resolve() == here:
                continue
        except OSError:
            continue
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = package_dir / f"_ext{suffix}"
            if candidate.is_file():
                found.append(candidate)
    return found


def _import_from(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_MODULE_NAME] = module
    return module


def _check_interface(module: ModuleType) -> str | None:
    version = getattr(module, "INTERFACE_VERSION", None)
    if version != INTERFACE_VERSION:
        return (
            f"compiled module {module.__file__} has interface version {version}, "
            f"this kernels_cuda expects {INTERFACE_VERSION}; rebuild it (pip install .)"
        )
    return None


@functools.lru_cache(maxsize=1)
def extension() -> Extension:
    """Import the compiled module once; the result says what happened."""
    try:
        # import_module, not "from . import _ext": only it says which name
        # was missing (ModuleNotFoundError.name).
        module = importlib.import_module(_MODULE_NAME)
    except ModuleNotFoundError as exc:
        if exc.name != _MODULE_NAME or _MODULE_NAME in sys.modules:
            return Extension(None, None, f"cannot import {_MODULE_NAME}: {exc}")
        copies = _installed_copies()
        if not copies:
            return Extension(
                None,
                None,
                f"{_MODULE_NAME} is not built: no compiled module next to "
                f"{Path(__file__).parent} nor in an installed kernels_cuda on sys.path; "
                "build it with `pip install .`",
            )
        try:
            module = _import_from(copies[0])
        except ImportError as load_exc:
            return Extension(None, str(copies[0]), f"cannot import {copies[0]}: {load_exc}")
    except ImportError as exc:
        # The file exists but does not load (missing symbol, wrong Python...).
        return Extension(None, None, f"cannot import {_MODULE_NAME}: {exc}")
    mismatch = _check_interface(module)
    if mismatch is not None:
        return Extension(None, module.__file__, mismatch)
    return Extension(module, module.__file__, None)


def require_extension() -> ModuleType:
    """The compiled module, or ExtensionNotBuiltError saying why not."""
    ext = extension()
    if ext.module is None:
        raise ExtensionNotBuiltError(f"kernels_cuda's compiled extension is unavailable: {ext.error}")
    return ext.module
