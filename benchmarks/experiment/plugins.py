"""Plugins: a user's module imported before a run, so that the methods and datasets it registers
(``methods.register_method``, ``datasets.register_dataset``) can be named on the command line."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from benchmarks.experiment.config import UsageError


def load_plugins(names: Iterable[str]) -> None:
    """Import every plugin of ``names`` (see :func:`load_plugin`); importing one twice is a
    no-op."""
    for name in names:
        load_plugin(name)


def load_plugin(name: str) -> ModuleType:
    """Import the plugin ``name``: a module on the Python path (``my_package.fewshot``) or the
    path of a ``.py`` file.

    Raises:
        UsageError: it cannot be found or imported, it fails while being imported, or it
            registers a method or dataset name that is taken; the message names the plugin.
    """
    try:
        if name.endswith(".py"):
            return _import_file(Path(name).expanduser())
        return importlib.import_module(name)
    except UsageError:
        raise
    except ImportError as error:
        raise UsageError(
            f"--plugin {name}: cannot import it ({error}); give a module on the Python path "
            "(set PYTHONPATH) or the path of a .py file"
        ) from error
    except ValueError as error:  # a name registered twice
        raise UsageError(f"--plugin {name}: {error}") from error
    except Exception as error:  # noqa: BLE001 - the plugin's own bug, reported as such
        raise UsageError(
            f"--plugin {name} failed while being imported: {type(error).__name__}: {error}"
        ) from error


def _import_file(path: Path) -> ModuleType:
    """The module of the file ``path``, imported once per resolved path."""
    if not path.is_file():
        raise UsageError(f"--plugin {path}: no such file")
    module_name = f"fewshot_plugin_{abs(hash(str(path.resolve()))):x}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
