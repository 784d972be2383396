"""The debugger's Variables panel while no thread is stopped, with no I/O.

At a breakpoint pydevd answers variable requests from the stopped frames. When the
kernel is not stopped there are no frames, so the kernel answers itself:
``inspectVariables`` lists the user namespace (:func:`namespace_variables`) and each
``variables`` request expands one entry by the ``variablesReference`` that listing
handed out (:func:`variables_body`). A :class:`VariableTable` maps references back
to the objects they stand for; it holds them strongly, but only until ``clear()``.

Inspection must not hang or crash the kernel on the user's objects, so only cheap,
bounded work is done on them: ``repr`` (cut to :data:`MAX_VALUE_LENGTH`, builtin
containers rendered piece by piece so a huge list is never formatted whole),
``len``, iteration of builtin containers, item access of Mappings and Sequences,
and attribute access. Every child is produced on its own: a failing ``repr`` or
property shows its error and spoils nothing else.
"""

from __future__ import annotations

import keyword
import math
import re
import types
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

__all__ = [
    "DEFAULT_CHILDREN",
    "DEFAULT_MAX_REFERENCES",
    "MAX_CHILDREN",
    "MAX_VALUE_LENGTH",
    "TableEntry",
    "VariableTable",
    "children",
    "describe",
    "is_user_variable",
    "namespace_variables",
    "value_repr",
    "variables_body",
]

MAX_VALUE_LENGTH = 1000
"""Longest ``value`` shown; a longer ``repr`` is cut there and ends with "..."."""
DEFAULT_CHILDREN = 300
"""Children returned when the request gives no ``count`` (or 0, DAP's "all")."""
MAX_CHILDREN = 10_000
"""Most children returned for one request, whatever ``count`` asks for."""
DEFAULT_MAX_REFERENCES = 100_000
"""Default bound on the live references of a :class:`VariableTable`."""

_MAX_ERROR_LENGTH = 200  # an exception message can be as large as a repr

# What IPython, Python and the kernel put in the user namespace. ipykernel hides
# every name starting with "_i" or "_<digit>", which also hides a user's "_index"
# or "_1st"; the pattern below matches IPython's history names exactly.
_HIDDEN_NAMES = frozenset(
    {
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "__annotations__",
        "__builtins__",
        "__builtin__",
        "__display__",
        "__warningregistry__",  # written by the warnings module
        "get_ipython",
        "exit",
        "quit",
        "In",
        "Out",
        "_",
        "__",
        "___",
        "_exit_code",  # written by IPython after each !command
        "debugpy",
    }
)
_IPYTHON_HISTORY_NAME = re.compile(r"_(?:i{1,3}|ih|oh|dh|i?[0-9]+)")
_NOT_HIDDEN = object()  # a value no namespace holds

# Builtin containers whose repr is built here piece by piece, with their brackets.
_BRACKETS: dict[type, tuple[str, str]] = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    dict: ("{", "}"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
    deque: ("deque([", "])"),
}
_CYCLE_MARKS: dict[type, str] = {list: "[...]", dict: "{...}", deque: "[...]"}
_TEXT_TYPES = (str, bytes, bytearray, memoryview)
# Values shown as they are: never expandable, even where the C type has members.
_SCALAR_TYPES = (int, float, complex, bool, str, bytes, bytearray, type(None))


def is_user_variable(name: str) -> bool:
    """Whether the Variables panel shows ``name`` from the user namespace.

    Hidden are the names IPython, Python and the kernel put there: module dunders,
    ``In``/``Out``, ``get_ipython``, ``exit``/``quit``, the output cache ``_``,
    ``__``, ``___``, ``_<N>`` and the input history ``_i``, ``_ii``, ``_iii``,
    ``_i<N>``, ``_ih``, ``_oh``, ``_dh``. Everything else is the user's, including
    ``_index`` or ``_private``.
    """
    return name not in _HIDDEN_NAMES and _IPYTHON_HISTORY_NAME.fullmatch(name) is None


@dataclass(frozen=True)
class TableEntry:
    """What a ``variablesReference`` stands for."""

    value: Any
    """The object whose children the reference expands to."""
    evaluate_name: str | None
    """An expression giving ``value`` from the namespace, or None if there is none."""


class VariableTable:
    """Hand out ``variablesReference`` integers for expandable values and resolve them.

    References are positive (DAP reserves 0 for "no children") and never reused,
    so a reference from before ``clear()`` stays unknown instead of silently naming
    another object. The table keeps every value it refers to alive until
    ``clear()``; the caller clears it before each ``inspectVariables``, since a
    reference describes the namespace as it was then. At most ``max_references``
    are live: past that, new values get 0 (shown, but not expandable) rather than
    growing the table without limit. Not thread-safe: use it from one thread.
    """

    def __init__(self, max_references: int = DEFAULT_MAX_REFERENCES) -> None:
        if type(max_references) is not int or max_references < 0:
            raise ValueError(f"max_references must be an integer >= 0, got {max_references!r}")
        self.max_references = max_references
        self._entries: dict[int, TableEntry] = {}
        # The same object reached by the same expression keeps its reference, so
        # expanding a node again does not use up the bound.
        self._known: dict[tuple[int, str | None], int] = {}
        self._next_reference = 1

    def reference_for(self, value: Any, evaluate_name: str | None = None) -> int:
        """The reference for ``value`` reached by ``evaluate_name``; 0 if the table is full."""
        key = (id(value), evaluate_name)  # ids are stable: the entry keeps value alive
        reference = self._known.get(key)
        if reference is not None:
            return reference
        if len(self._entries) >= self.max_references:
            return 0
        reference = self._next_reference
        self._next_reference += 1
        self._entries[reference] = TableEntry(value, evaluate_name)
        self._known[key] = reference
        return reference

    def lookup(self, reference: object) -> TableEntry | None:
        """The entry behind ``reference``, or None if this table did not hand it out."""
        if type(reference) is not int:
            return None
        return self._entries.get(reference)

    def clear(self) -> None:
        """Forget every reference and release the values they kept alive."""
        self._entries.clear()
        self._known.clear()

    def __len__(self) -> int:
        return len(self._entries)


def value_repr(value: Any, limit: int = MAX_VALUE_LENGTH) -> str:
    """``repr(value)`` cut to ``limit`` characters plus "...", never raising.

    Builtin containers and strings are rendered only as far as the limit needs. A
    ``repr`` that raises gives ``<repr failed: ExceptionType: message>``.
    """
    try:
        text = _bounded_repr(value, limit, set())
    except Exception as error:
        return _failure_text("repr", error)
    if len(text) > limit:
        return text[:limit] + "..."
    return text


def _bounded_repr(value: Any, limit: int, active: set[int]) -> str:
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        # repr of a prefix is at least as long as the prefix: still over the limit.
        return repr(value[:limit]) if len(value) > limit else repr(value)
    brackets = _BRACKETS.get(kind)
    if brackets is None or not value:
        return repr(value)
    if id(value) in active:  # the container contains itself: write it as repr does
        return _CYCLE_MARKS.get(kind, "(...)")
    opening, closing = brackets
    if kind is deque and value.maxlen is not None:
        closing = f"], maxlen={value.maxlen})"
    active.add(id(value))
    try:
        pieces: list[str] = []
        used = len(opening)
        for item in dict.items(value) if kind is dict else value:
            if kind is dict:
                key_text = _bounded_repr(item[0], limit - used, active)
                room = max(0, limit - used - len(key_text) - 2)
                piece = f"{key_text}: {_bounded_repr(item[1], room, active)}"
            else:
                piece = _bounded_repr(item, limit - used, active)
            pieces.append(piece)
            used += len(piece) + 2
            if used > limit:
                # The trailing ", ..." keeps the text over the limit, so every
                # enclosing container, and value_repr, knows it was cut.
                return opening + ", ".join(pieces) + ", ..."
    finally:
        active.discard(id(value))
    if kind is tuple and len(pieces) == 1:
        closing = ",)"
    return opening + ", ".join(pieces) + closing


def _failure_text(action: str, error: BaseException) -> str:
    try:
        message = str(error)
    except Exception:
        message = ""
    if len(message) > _MAX_ERROR_LENGTH:
        message = message[:_MAX_ERROR_LENGTH] + "..."
    name = type(error).__name__
    return f"<{action} failed: {name}: {message}>" if message else f"<{action} failed: {name}>"


def _type_name(value: Any) -> str:
    kind = type(value)  # not value.__class__, which a proxy may fake
    name = getattr(kind, "__qualname__", None)
    return name if isinstance(name, str) else kind.__name__


def describe(
    name: str, value: Any, table: VariableTable, evaluate_name: str | None = None
) -> dict[str, Any]:
    """One DAP ``Variable`` for ``value``.

    ``evaluate_name`` is an expression that gives ``value`` from the namespace; when
    None (the value cannot be reached by an expression, like a set element) the
    variable has no ``evaluateName``. ``variablesReference`` is a new reference from
    ``table`` when the value has children, else 0.
    """
    reference = table.reference_for(value, evaluate_name) if _has_children(value) else 0
    variable: dict[str, Any] = {
        "name": name,
        "value": value_repr(value),
        "type": _type_name(value),
        "variablesReference": reference,
    }
    if evaluate_name is not None:
        variable["evaluateName"] = evaluate_name
    return variable


def _describe_failure(
    name: str, action: str, error: Exception, evaluate_name: str | None
) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "name": name,
        "value": _failure_text(action, error),
        "type": type(error).__name__,
        "variablesReference": 0,
    }
    if evaluate_name is not None:
        variable["evaluateName"] = evaluate_name
    return variable


def _children_kind(value: Any) -> str | None:
    if type(value) in _SCALAR_TYPES:
        return None
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, deque):
        return "deque"
    if isinstance(value, Sequence) and not isinstance(value, _TEXT_TYPES):
        return "sequence"
    if isinstance(value, (set, frozenset)):
        return "set"
    return "attributes"


def _has_children(value: Any) -> bool:
    try:
        kind = _children_kind(value)
        if kind is None:
            return False
        if kind == "attributes":
            return bool(_attribute_names(value))
        if kind == "dict":
            return dict.__len__(value) > 0
        return len(value) > 0
    except Exception:
        return False  # an object we cannot even measure is shown, not expanded


def _attribute_names(value: Any) -> list[str]:
    """Sorted attribute names worth showing: instance ``__dict__``, slots, properties.

    Names starting with "__" are left out. Only dictionaries are read here; no
    attribute is evaluated.
    """
    names: set[str] = set()
    try:
        # object.__getattribute__ skips a user __getattr__/__getattribute__.
        own = object.__getattribute__(value, "__dict__")
    except Exception:
        own = None
    if isinstance(own, (dict, types.MappingProxyType)):
        names.update(name for name in own if isinstance(name, str) and not name.startswith("__"))
    for cls in type(value).__mro__:
        for name, attribute in cls.__dict__.items():
            if not isinstance(name, str) or name.startswith("__"):
                continue
            if isinstance(attribute, property):
                names.add(name)
            elif isinstance(attribute, types.MemberDescriptorType):  # a __slots__ entry
                try:
                    attribute.__get__(value, cls)
                except AttributeError:
                    continue  # a slot never assigned has nothing to show
                names.add(name)
    return sorted(names)


def _subscript(evaluate_name: str | None, index: str | None) -> str | None:
    if evaluate_name is None or index is None:
        return None
    return f"{evaluate_name}[{index}]"


def _attribute_expression(evaluate_name: str | None, name: str) -> str | None:
    if evaluate_name is None:
        return None
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{evaluate_name}.{name}"
    return f"getattr({evaluate_name}, {name!r})"


def _key_expression(key: Any) -> str | None:
    """Source text that evaluates to ``key``, or None when its repr would not."""
    try:
        text = _literal(key)
    except (ValueError, RecursionError):
        return None  # an int too long to write in decimal, a tuple nested too deep
    return text if text is not None and len(text) <= MAX_VALUE_LENGTH else None


def _literal(key: Any) -> str | None:
    kind = type(key)
    if kind is tuple:
        parts = [_literal(item) for item in key]
        if None in parts:
            return None
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"  # type: ignore[arg-type]
    if kind is float and not math.isfinite(key):
        return None  # repr gives "nan" or "inf", which are not expressions
    if kind in (str, bytes, int, float, bool, type(None)):
        return repr(key)
    return None


def _page(start: Any, count: Any) -> tuple[int, int, bool]:
    """Validate ``start``/``count``; return start, stop, and whether the default cap applied."""
    if start is None:
        start = 0
    if type(start) is not int or start < 0:
        raise ValueError(f"'start' must be an integer >= 0, got {start!r}")
    if count is not None and (type(count) is not int or count < 0):
        raise ValueError(f"'count' must be an integer >= 0, got {count!r}")
    if not count:  # DAP: a missing or zero count asks for every child
        return start, start + DEFAULT_CHILDREN, True
    return start, start + min(count, MAX_CHILDREN), False


def children(
    value: Any,
    table: VariableTable,
    evaluate_name: str | None = None,
    start: int = 0,
    count: int | None = None,
) -> list[dict[str, Any]]:
    """The children of ``value`` as DAP Variables, ``count`` of them from ``start``.

    Mappings give their items (named by the key's repr), lists, tuples, deques and
    other Sequences their elements by index, sets and frozensets their elements by
    position (with no ``evaluateName``: a set cannot be subscripted), and other
    objects their attributes not starting with "__" (instance ``__dict__``,
    ``__slots__``, properties). ``count`` None or 0 means "all" in DAP, but returns
    at most :data:`DEFAULT_CHILDREN` followed by a "..." entry telling how many
    more there are, so a list of ten million elements costs no more than 300; no
    ``count`` returns more than :data:`MAX_CHILDREN`. A child that fails (a
    raising property) shows its error; if the children cannot be listed at all,
    a single entry shows why. Raises ValueError for an invalid ``start``/``count``.
    """
    start, stop, capped = _page(start, count)
    try:
        kind = _children_kind(value)
        if kind is None:
            return []
        variables, total = _CHILDREN_BY_KIND[kind](value, table, evaluate_name, start, stop)
    except Exception as error:
        return [_describe_failure("<error>", "listing children", error, None)]
    if capped and total > stop:
        variables.append(
            {
                "name": "...",
                "value": f"{total - stop} more not shown",
                "type": "",
                "variablesReference": 0,
            }
        )
    return variables


_Listing = tuple[list[dict[str, Any]], int]


def _dict_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    # Unbound dict methods read the storage without running a subclass's overrides.
    items = list(islice(dict.items(value), start, stop))
    variables = [
        describe(value_repr(key), item, table, _subscript(evaluate_name, _key_expression(key)))
        for key, item in items
    ]
    return variables, dict.__len__(value)


def _mapping_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    total = len(value)
    variables = []
    for key in list(islice(iter(value), start, stop)):
        name = value_repr(key)
        expression = _subscript(evaluate_name, _key_expression(key))
        try:
            item = value[key]
        except Exception as error:
            variables.append(_describe_failure(name, "getitem", error, expression))
            continue
        variables.append(describe(name, item, table, expression))
    return variables, total


def _list_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    base = list if isinstance(value, list) else tuple
    items = base.__getitem__(value, slice(start, stop))
    variables = [
        describe(str(index), item, table, _subscript(evaluate_name, str(index)))
        for index, item in enumerate(items, start)
    ]
    return variables, base.__len__(value)


def _deque_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    items = list(islice(value, start, stop))  # indexing a deque's middle is linear anyway
    variables = [
        describe(str(index), item, table, _subscript(evaluate_name, str(index)))
        for index, item in enumerate(items, start)
    ]
    return variables, len(value)


def _sequence_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    total = len(value)
    variables = []
    for index in range(start, min(stop, total)):
        expression = _subscript(evaluate_name, str(index))
        try:
            item = value[index]
        except Exception as error:
            variables.append(_describe_failure(str(index), "getitem", error, expression))
            continue
        variables.append(describe(str(index), item, table, expression))
    return variables, total


def _set_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    items = list(islice(value, start, stop))
    variables = [describe(str(position), item, table) for position, item in enumerate(items, start)]
    return variables, len(value)


def _attribute_children(
    value: Any, table: VariableTable, evaluate_name: str | None, start: int, stop: int
) -> _Listing:
    names = _attribute_names(value)
    variables = []
    for name in names[start:stop]:
        expression = _attribute_expression(evaluate_name, name)
        try:
            attribute = getattr(value, name)
        except Exception as error:
            variables.append(_describe_failure(name, "getattr", error, expression))
            continue
        variables.append(describe(name, attribute, table, expression))
    return variables, len(names)


_CHILDREN_BY_KIND = {
    "dict": _dict_children,
    "mapping": _mapping_children,
    "list": _list_children,
    "deque": _deque_children,
    "sequence": _sequence_children,
    "set": _set_children,
    "attributes": _attribute_children,
}


def namespace_variables(
    namespace: dict[str, Any], table: VariableTable, hidden: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The ``variables`` of an ``inspectVariables`` reply for a user namespace.

    Every name :func:`is_user_variable` accepts, sorted, modules, functions and
    classes included: they are the user's too. ``hidden`` is IPython's
    ``user_ns_hidden``: a name still bound to the very object IPython put there is
    IPython's, not the user's (the rule of IPython's own ``%who``). No fixed list
    can do that for ``open``, which IPython binds in the namespace and a user may
    rebind. Call ``table.clear()`` first so references from an earlier listing do
    not keep old objects alive.
    """
    # One C-level copy: a cell running on the main thread may add names meanwhile.
    snapshot = list(namespace.items())
    hidden = hidden if hidden is not None else {}
    shown = sorted(
        (
            (name, value)
            for name, value in snapshot
            if isinstance(name, str)
            and is_user_variable(name)
            and hidden.get(name, _NOT_HIDDEN) is not value
        ),
        key=lambda item: item[0],
    )
    return [
        describe(name, value, table, name if _is_plain_name(name) else None)
        for name, value in shown
    ]


def _is_plain_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def variables_body(
    reference: object, table: VariableTable, start: int = 0, count: int | None = None
) -> dict[str, Any] | None:
    """The body of the ``variables`` response for ``reference``.

    None when ``table`` does not know the reference (never handed out, or cleared
    since): the caller answers with an error response. ``start`` and ``count`` are
    the request's paging arguments, see :func:`children`.
    """
    entry = table.lookup(reference)
    if entry is None:
        return None
    return {"variables": children(entry.value, table, entry.evaluate_name, start, count)}
