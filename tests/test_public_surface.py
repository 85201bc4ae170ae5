"""The public surface, checked: what ``aiofuul`` exports, what its public methods
return, and what it raises.

- Like httpx's ``tests/test_exported_members.py``: every public name of the package is
  in ``__all__`` and every name in ``__all__`` exists.
- Every type a public method (or property) of an exported class returns is exported
  (from ``aiofuul``, or for the endpoint groups' answers from ``aiofuul.api``),
  and so is every type those types hold (``EventPipeline.trigger_executions`` ...): a
  user can name in an annotation whatever the library hands them.
- Every exception the library raises on purpose is a :class:`~aiofuul.FuulError`
  (``except aiofuul.FuulError`` catches them all); config errors are also
  ``ValueError`` (:class:`~aiofuul.ConfigurationError`), timeouts ``TimeoutError``. A
  walk over the source (``ast``) finds every ``raise X(...)`` and fails listing those
  outside the hierarchy.

Decisions, for the source walk:

- It covers the client library: ``src/aiofuul/**/*.py``. Not ``aiofuul.cli`` (a program:
  its ``CLIError`` becomes an exit status and a message, never an exception a caller
  sees) nor ``aiofuul.sandbox`` (a server: its errors become HTTP answers).
- Re-raising what was caught (``raise``, ``raise exc``, ``raise exc.for_scope(...)``)
  is not a new exception and is not checked.
- ``TypeError`` is allowed only where listed below: a wrong argument type found at
  run time is Python's own convention (and what ``mypy`` would have said).
- ``ImportError`` for a missing optional dependency is the convention everyone
  catches (``pip install 'aiofuul[otel]'``); ``FileNotFoundError`` for a missing file
  is what ``open()`` would raise.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import aiofuul
import aiofuul.api
from aiofuul import FuulError

SRC = Path(aiofuul.__file__).parent
# Where a user finds the library's types: the package, and its endpoint groups' types.
PUBLIC_NAMESPACES = (aiofuul, aiofuul.api)

# (file, exception): the deliberate raises outside FuulError, each for its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("metrics.py", "ImportError"): "a missing optional dependency (aiofuul[otel])",
    ("engine/redis_limiter.py", "ImportError"): "a missing optional dependency (aiofuul[redis])",
    ("storage/outbox.py", "FileNotFoundError"): "no outbox file at the path given to manage it",
    ("testing.py", "TypeError"): "a test's MockTransport handler returned no Response",
    ("testing.py", "ValueError"): "respond() given both json= and body= in a test",
    ("__main__.py", "SystemExit"): "python -m aiofuul: the command's exit status",
    ("engine/ledger.py", "AssertionError"): "an exhaustiveness guard that mypy proves unreachable",
}
# Signals a private or nested function raises for the library code that calls it, which
# catches them (``_allowed`` checks they are raised only there).
SIGNALS: dict[tuple[str, str], str] = {
    (
        "storage/_redis_url.py",
        "ValueError",
    ): "an option parser's 'not of this kind', re-raised as ConfigurationError naming it",
    ("api/_decode.py", "TypeError"): "msgspec's dec_hook protocol: a value of the wrong kind",
    ("api/_decode.py", "ValidationError"): "msgspec's own error for a list that is not one",
    ("api/_group.py", "ValueError"): "a page reader's 'not a page': a TransportError to the caller",
    ("api/affiliate_portal.py", "TypeError"): "a reader's 'not an object', the same",
    ("api/referral_codes.py", "ValueError"): "generate's reader: 'not a list of codes'",
    (
        "webhooks.py",
        "ValueError",
    ): "a converter's refusal, re-raised as WebhookError naming the field",
}

# What the sync client does in place of the async client's method, or why it has none.
SYNC_EQUIVALENTS = {
    "aclose": "close",
    "atrack": "track",  # a sync call cannot wait for room without blocking the caller
    "start": "track",  # started on first use
    "track_threadsafe": "track",  # its track() is thread-safe already
}


# -- exports ---------------------------------------------------------------------------
def test_every_public_name_is_in_all_and_every_name_in_all_exists() -> None:
    public = {
        name
        for name, value in vars(aiofuul).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(aiofuul.__all__)
    assert len(aiofuul.__all__) == len(set(aiofuul.__all__))


def _classes_in(annotation: object) -> Iterator[type]:
    """The classes an annotation names: ``list[Conversion] | None`` -> Conversion."""
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        yield annotation
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):  # Paginator[Movement] -> Paginator too
        yield origin
    for arg in typing.get_args(annotation):
        yield from _classes_in(arg)


def _namespace(owner: object) -> dict[str, object]:
    module = sys.modules[getattr(owner, "__module__", "aiofuul")]
    names = dict(vars(module))
    # Names a module imports for annotations only (``if TYPE_CHECKING:``).
    names.setdefault("Unpack", typing.Unpack if hasattr(typing, "Unpack") else object)
    return names


def _return_annotation(func: object) -> object:
    annotation = inspect.signature(func).return_annotation  # type: ignore[arg-type]
    if isinstance(annotation, str):
        annotation = eval(annotation, _namespace(func))
    return annotation


def _returned_types(cls: type) -> Iterator[tuple[str, type]]:
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            func = member.fget
        elif isinstance(member, functools.cached_property):
            func = member.func  # the endpoint groups: fuul.users, fuul.payouts, ...
        else:
            func = member
        if not callable(func) or isinstance(func, type):
            continue
        try:
            annotation = _return_annotation(func)
        except (TypeError, ValueError):  # no signature (a builtin)
            continue
        for found in _classes_in(annotation):
            yield f"{cls.__name__}.{name}()", found


def _field_types(cls: type) -> Iterator[type]:
    """The classes the fields of a Struct or dataclass hold."""
    if issubclass(cls, msgspec.Struct) or dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
    else:
        return
    for annotation in hints.values():
        yield from _classes_in(annotation)


def _ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "aiofuul"


def test_every_type_a_public_method_returns_is_exported() -> None:
    everything = [getattr(ns, name) for ns in PUBLIC_NAMESPACES for name in ns.__all__]
    exported = {id(value) for value in everything}
    missing: dict[str, str] = {}
    todo = list(everything)
    seen: set[int] = set()
    while todo:
        cls = todo.pop()
        if not isinstance(cls, type) or id(cls) in seen:
            continue
        seen.add(id(cls))
        held = [(f"a field of {cls.__name__}", t) for t in _field_types(cls)]
        for where, found in [*_returned_types(cls), *held]:
            if not _ours(found):
                continue
            if id(found) not in exported:
                missing.setdefault(f"{found.__module__}.{found.__qualname__}", where)
            todo.append(found)
    assert missing == {}, "returned or held but not exported from aiofuul or aiofuul.api"


def test_the_sync_client_has_every_public_method_of_the_async_one() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    sync, async_ = public(aiofuul.SyncFuulClient), public(aiofuul.FuulClient)
    missing = {name for name in async_ - sync if SYNC_EQUIVALENTS.get(name) not in sync}
    assert missing == set(), "FuulClient methods the SyncFuulClient lacks"
    assert sync - async_ == {"close"}


def test_the_known_result_types_are_exported() -> None:
    # The two the issue found, named: the check above must see them.
    for name in ("EventPipeline", "Conversion", "Trigger", "TriggerExecution"):
        assert name in aiofuul.__all__


# -- the hierarchy ---------------------------------------------------------------------------
def test_configuration_errors_are_fuul_errors_and_value_errors() -> None:
    assert issubclass(aiofuul.ConfigurationError, FuulError)
    assert issubclass(aiofuul.ConfigurationError, ValueError)
    assert issubclass(aiofuul.InsecureURLError, aiofuul.ConfigurationError)
    assert issubclass(aiofuul.ValidationError, ValueError)


@pytest.mark.parametrize(
    "build",
    [
        lambda: aiofuul.ClientConfig(max_batch=0),
        lambda: aiofuul.ClientConfig(max_in_flight=0),
        lambda: aiofuul.ClientConfig(queue_full="explode"),  # type: ignore[arg-type]
        lambda: aiofuul.ClientConfig(timeout=0),
        lambda: aiofuul.RateLimit(0),
        lambda: aiofuul.FuulClient("k", base_url="ftp://example.com/"),
        lambda: aiofuul.FuulClient("k", base_url="https://user:pw@example.com/"),
        lambda: aiofuul.FuulClient("k", base_url="http://example.com/"),
    ],
)
def test_a_bad_setting_is_a_configuration_error(build: typing.Callable[[], object]) -> None:
    with pytest.raises(aiofuul.ConfigurationError) as caught:
        build()
    assert isinstance(caught.value, ValueError)  # as before ConfigurationError existed


def test_a_plain_http_url_is_an_insecure_url_error() -> None:
    with pytest.raises(aiofuul.InsecureURLError, match="in clear"):
        aiofuul.FuulClient("k", base_url="http://api.example.com/")


# -- the source walk ---------------------------------------------------------------------------
# Programs, not the library: their errors become exit statuses and HTTP answers.
_NOT_LIBRARY = ("cli", "sandbox")


def _library_files() -> list[Path]:
    """Every module of the client library, subpackages included (new endpoint groups
    are checked as they come), but not the command line or the sandbox server."""
    return sorted(
        path for path in SRC.rglob("*.py") if path.relative_to(SRC).parts[0] not in _NOT_LIBRARY
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("aiofuul", *parts))


def _where(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _resolve(node: ast.expr, namespace: dict[str, object]) -> object:
    """What a ``raise``'s callee names (a class, a function), or None when it is an
    expression of a caught exception (``exc.for_scope``)."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, namespace)
        if isinstance(base, (types.ModuleType, type)):
            return getattr(base, node.attr, None)
    return None


def _raised_class(target: object, namespace: dict[str, object]) -> type | None:
    if isinstance(target, type):
        return target
    if inspect.isfunction(target):  # a factory: judged by what it says it returns
        returned = _return_annotation(target)
        return returned if isinstance(returned, type) else None
    return None


@dataclasses.dataclass(frozen=True)
class _Raise:
    line: int
    callee: str
    cls: type | None  # None: the walk cannot tell
    function: str  # the innermost enclosing function ("" at module level)
    internal: bool  # in a private or nested function: a signal to the library's caller

    @property
    def key(self) -> str:
        return self.cls.__name__ if self.cls is not None else "?"


def _raises(path: Path) -> Iterator[_Raise]:
    module = importlib.import_module(_module_name(path))
    private = path.stem.startswith("_") and path.stem != "__init__"
    yield from _raises_in(path.read_text(), vars(module), private)


def _raises_in(source: str, names: dict[str, object], private: bool = False) -> Iterator[_Raise]:
    """Each ``raise`` of a new exception in ``source``, judged by the module's
    ``names`` (re-raises of what was caught are left out). In a ``private`` module
    every function is internal: only the library calls it."""
    namespace = {**vars(builtins), **names}

    def visit(node: ast.AST, functions: tuple[str, ...]) -> Iterator[_Raise]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, (*functions, child.name))
            elif isinstance(child, ast.Raise) and child.exc is not None:
                found = _judge(child, namespace, ("_", *functions) if private else functions)
                if found is not None:
                    yield found
                yield from visit(child, functions)
            else:
                yield from visit(child, functions)

    yield from visit(ast.parse(source), ())


def _judge(
    node: ast.Raise, namespace: dict[str, object], functions: tuple[str, ...]
) -> _Raise | None:
    assert node.exc is not None
    callee = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    is_name = isinstance(callee, ast.Name) and not isinstance(node.exc, ast.Call)
    if is_name and not isinstance(namespace.get(callee.id), type):  # type: ignore[attr-defined]
        return None  # ``raise exc``: a re-raise of what was caught
    if isinstance(callee, ast.Attribute) and _resolve(callee.value, namespace) is None:
        return None  # ``raise exc.within(...)``: the caught exception, rebuilt
    cls = _raised_class(_resolve(callee, namespace), namespace)
    function = functions[-1] if functions else ""
    private = function.startswith("_") and not function.startswith("__")
    return _Raise(node.lineno, ast.unparse(callee), cls, function, private or len(functions) > 1)


def _protocol(found: _Raise) -> bool:
    """Raised as Python's protocols want it: an abstract method's NotImplementedError,
    ``__getattr__``'s AttributeError."""
    return found.cls is NotImplementedError or (
        found.cls is AttributeError and found.function == "__getattr__"
    )


def _allowed(path: Path, found: _Raise) -> bool:
    if (found.cls is not None and issubclass(found.cls, FuulError)) or _protocol(found):
        return True
    key = (_where(path), found.key)
    return key in ALLOWED or (found.internal and key in SIGNALS)


def test_every_exception_raised_on_purpose_is_a_fuul_error() -> None:
    outside = [
        f"{_where(path)}:{found.line} raise {found.callee}(...) in {found.function or 'module'}()"
        for path in _library_files()
        for found in _raises(path)
        if not _allowed(path, found)
    ]
    assert outside == [], "raised on purpose, but not a FuulError"


def test_the_allow_lists_have_no_stale_entries() -> None:
    found = {
        (_where(path), r.key)
        for path in _library_files()
        for r in _raises(path)
        if r.cls is None or not issubclass(r.cls, FuulError)
    }
    stale = (set(ALLOWED) | set(SIGNALS)) - found
    assert stale == set(), "allowed exceptions no longer raised: remove them"


def _factory() -> aiofuul.ValidationError:
    return aiofuul.ValidationError("f", "r")


def test_the_walk_tells_new_exceptions_from_re_raises() -> None:
    # The walk itself, on source made for it: it must not pass by seeing nothing.
    source = """
def f(exc):
    raise ValueError("x")
    raise aiofuul.TransportError("y") from None
    raise _factory()
    raise exc
    raise exc.within("[3].")
    raise

def _private():
    raise TypeError("a signal")

def public():
    def nested():
        raise KeyError("a signal")
"""
    found = [(r.callee, r.cls, r.function, r.internal) for r in _raises_in(source, globals())]
    assert found == [
        ("ValueError", ValueError, "f", False),
        ("aiofuul.TransportError", aiofuul.TransportError, "f", False),
        ("_factory", aiofuul.ValidationError, "f", False),
        ("TypeError", TypeError, "_private", True),
        ("KeyError", KeyError, "nested", True),
    ]
    assert sum(1 for path in _library_files() for _ in _raises(path)) > 50
