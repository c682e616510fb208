"""Method registry: every method tadkit trains, tests, converts and detects with.

Built-in methods live in ``tadkit/methods/<name>/`` and define ``SPEC`` (a :class:`MethodSpec`) in
their ``__init__`` — a few lines, no torch import — so listing methods stays cheap. A method of
your own needs no edit here: register it (``register_method(SPEC)``) or name it in a config as
``model.name: my_package.my_module:SPEC`` (or pass ``--method-module my_package.my_module:SPEC``).
A plug-in is code: only the user's config or command line may name one to import; a checkpoint's
``model_name`` may name only a built-in, registered or already loaded method.
"""

from __future__ import annotations

import importlib

from tadkit.errors import TadkitError
from tadkit.methods.base import ClassActivation, MethodSpec, resolve

# name -> package that defines SPEC (imported on first use)
BUILTIN_METHODS: dict[str, str] = {
    "a2net": "tadkit.methods.a2net",
    "ecm": "tadkit.methods.ecm",
    "acrnet": "tadkit.methods.acrnet",
    "afsd": "tadkit.methods.afsd",
    "afsd_e2e": "tadkit.methods.afsd:SPEC_E2E",
    "actionformer": "tadkit.methods.actionformer",
}
_REGISTERED: dict[str, MethodSpec] = {}
# "module:attr" -> spec, for plug-ins the user named (config model.name, --method-module); a
# checkpoint or other data file may name only these, the built-ins and registered methods
_LOADED_PLUGINS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` under ``spec.name`` (lower-case); taking a used or built-in name needs ``replace``."""
    key = spec.name.lower()
    if not replace:
        if key in BUILTIN_METHODS:
            raise ValueError(f"{spec.name!r} is a built-in method")
        if key in _REGISTERED and _REGISTERED[key] is not spec:
            raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTERED[key] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered (non-built-in) method; for tests and plug-in reloads."""
    key = name.lower()
    if key in BUILTIN_METHODS:
        raise ValueError(f"{name!r} is a built-in method")
    _REGISTERED.pop(key, None)


def _load_builtin(key: str) -> MethodSpec:
    module, _, attr = BUILTIN_METHODS[key].partition(":")
    spec = getattr(importlib.import_module(module), attr or "SPEC")
    _REGISTERED.setdefault(key, spec)
    return _REGISTERED[key]


def available_methods() -> list[str]:
    return sorted({*BUILTIN_METHODS, *_REGISTERED})


def get_method(name: str, *, field: str = "model.name", file: str | None = None,
               allow_import: bool = True) -> MethodSpec:
    """The spec registered as ``name``, or the ``MethodSpec`` at ``"module:attr"`` (a plug-in).

    ``allow_import=False`` is for names read from data (a checkpoint's ``model_name``): they may name
    a built-in, registered or already loaded method, never a module to import -- a plug-in is code
    and comes from the user's config or ``--method-module``, not from a file's contents.
    """
    text = str(name)
    key = text.lower()
    if key in _REGISTERED:
        return _REGISTERED[key]
    if key in BUILTIN_METHODS:
        return _load_builtin(key)
    if ":" in text:
        if text in _LOADED_PLUGINS:
            return _LOADED_PLUGINS[text]
        if not allow_import:
            raise TadkitError(
                f"names the plug-in method {text!r}, which is not built in, registered or loaded. tadkit never "
                "imports a module a data file names: if you trust that method, name it in your config "
                f"(model.name: {text}) or pass --method-module {text}", file=file, field=field)
        return load_method_module(text, field=field, file=file)
    raise TadkitError(f"unknown method {text!r}; available: {', '.join(available_methods())} "
                      "(or 'package.module:SPEC' for a method of your own)", file=file, field=field)


def load_method_module(text: str, *, field: str = "--method-module", file: str | None = None) -> MethodSpec:
    """Import the plug-in method ``"package.module:SPEC"`` (``"package.module"`` means its ``SPEC``) that
    the user named -- this runs the module's code -- and let data files name it from then on."""
    reference = text if ":" in text else f"{text}:SPEC"
    try:
        spec = resolve(reference)
    except (ImportError, AttributeError, ValueError) as error:
        raise TadkitError(f"cannot load method {text!r}: {error}", file=file, field=field) from None
    if not isinstance(spec, MethodSpec):
        raise TadkitError(f"{text!r} is a {type(spec).__name__}, not a tadkit MethodSpec", file=file, field=field)
    _LOADED_PLUGINS[reference] = spec
    return spec


def official_importers() -> dict[str, MethodSpec]:
    """``{"<name>-official": spec}`` for every built-in or registered method with an importer."""
    specs = [get_method(name) for name in available_methods()]
    return {f"{spec.name}-official": spec for spec in specs if spec.official_importer is not None}


__all__ = [
    "BUILTIN_METHODS",
    "ClassActivation",
    "MethodSpec",
    "available_methods",
    "get_method",
    "load_method_module",
    "official_importers",
    "register_method",
    "unregister_method",
]
