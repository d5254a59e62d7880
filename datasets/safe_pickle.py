"""Reading the pickled datasets users are handed without running code stored in them.

A pickle names functions for the loader to call; an ordinary ``pickle.load`` calls whatever a
file names. The datasets read here (learn2learn's miniImageNet and FC100 pickles,
tieredImageNet's label files) hold only containers, strings, numbers and numpy arrays, so
:class:`RestrictedUnpickler` admits exactly the constructors those need and refuses every other
with :class:`UnsafePickleError`. :func:`restricted_pickles` applies it to code that calls
``pickle.load`` itself (learn2learn's readers).
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Iterator
from typing import IO, Any

#: ``(module, name)`` pairs a dataset pickle may construct: builtin containers and scalars,
#: ``collections.OrderedDict``, and numpy's array, dtype and scalar reconstruction (numpy 1 and 2
#: module paths).
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [
        *(
            ("builtins", name)
            for name in (
                "dict",
                "list",
                "tuple",
                "set",
                "frozenset",
                "bytes",
                "bytearray",
                "str",
                "int",
                "float",
                "complex",
                "bool",
                "range",
                "slice",
            )
        ),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
        *(
            (module, name)
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        *((module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    ]
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked to construct something a dataset file never holds (it could run code)."""


def _checked(module: str, name: str) -> None:
    if (module, name) not in ALLOWED:
        raise UnsafePickleError(
            f"the pickle asks for {module}.{name}, which no dataset file holds; it was not "
            "loaded (a pickle can run code). Use the published file of the dataset"
        )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that constructs only the types in :data:`ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        _checked(module, name)
        return super().find_class(module, name)


class _RestrictedPythonUnpickler(pickle._Unpickler):
    """The same restriction on pickle's pure-Python unpickler (which some readers use to set
    ``encoding`` after construction)."""

    def find_class(self, module: str, name: str) -> Any:
        _checked(module, name)
        return super().find_class(module, name)


def safe_load(stream: IO[bytes], **options: Any) -> Any:
    """``pickle.load`` restricted to :data:`ALLOWED` (``options``: ``encoding``, ``errors``,
    ``fix_imports``, as ``pickle.load`` takes them)."""
    return RestrictedUnpickler(stream, **options).load()


def safe_loads(data: bytes, **options: Any) -> Any:
    """``pickle.loads`` restricted to :data:`ALLOWED`."""
    return safe_load(io.BytesIO(data), **options)


@contextlib.contextmanager
def restricted_pickles() -> Iterator[None]:
    """Inside the block, ``pickle.load``, ``pickle.loads``, ``pickle.Unpickler`` and
    ``pickle._Unpickler`` (as any module reaches them) admit only :data:`ALLOWED`; for readers
    in other packages that load pickles themselves."""
    names = ("load", "loads", "Unpickler", "_Unpickler")
    original = {name: getattr(pickle, name) for name in names}
    restricted = (safe_load, safe_loads, RestrictedUnpickler, _RestrictedPythonUnpickler)
    for name, replacement in zip(names, restricted):
        setattr(pickle, name, replacement)
    try:
        yield
    finally:
        for name, value in original.items():
            setattr(pickle, name, value)
