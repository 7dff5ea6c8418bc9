"""Finding the user's ASGI application from ``MODULE:ATTR`` (or taking the object given)."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from typing import Any, cast

from asgisup.errors import AppLoadError
from asgisup.types import ASGIApp


def _module_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether the import failed because ``module`` itself (not one of its imports) is missing."""
    name = exc.name or ""
    return module == name or module.startswith(name + ".")


def import_from_string(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute.

    Raises AppLoadError with a message for the user: a malformed string, a missing module or
    attribute, or the traceback of an exception raised while the module was imported.
    """
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(f"application must look like 'module:attribute', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _module_missing(exc, module_name):
            raise AppLoadError(
                f"could not import module {module_name!r} (sys.path[0] is {sys.path[0]!r}; "
                "see --app-dir)"
            ) from None
        raise AppLoadError(_format_import_failure(module_name, exc)) from None
    except Exception as exc:
        raise AppLoadError(_format_import_failure(module_name, exc)) from None
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    return obj


def _format_import_failure(module_name: str, exc: BaseException) -> str:
    # Keep only the frames of the user's code: asgisup's and importlib's are noise to them.
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and "asgisup" not in frame.filename
    ]
    lines = ["".join(traceback.format_list(frames)), *traceback.format_exception_only(exc)]
    return f"error while importing {module_name!r}:\nTraceback:\n" + "".join(lines).rstrip()


def load_app(app: str | object, *, factory: bool, app_dir: str | None) -> ASGIApp:
    """The ASGI 3 application to serve.

    ``app`` is an import string or the application object itself; with ``factory`` it names a
    callable that returns the application. Raises AppLoadError.
    """
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    obj = import_from_string(app) if isinstance(app, str) else app
    if factory:
        if not callable(obj):
            raise AppLoadError(f"--factory: {app!r} is not callable")
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(f"the application factory raised {exc!r}") from exc
    if not callable(obj):
        raise AppLoadError(f"{app!r} is not an ASGI application (not callable)")
    if inspect.isclass(obj) or _looks_like_asgi2(obj):
        raise AppLoadError(
            f"{app!r} looks like an ASGI 2 application; asgisup serves ASGI 3 "
            "(async def app(scope, receive, send))"
        )
    return cast(ASGIApp, obj)


def _looks_like_asgi2(obj: object) -> bool:
    """An ASGI 2 app is called with the scope alone and returns the coroutine function."""
    try:
        params = inspect.signature(obj).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    call = obj if inspect.isroutine(obj) else type(obj).__call__
    return len(params) == 1 and not inspect.iscoroutinefunction(call)
