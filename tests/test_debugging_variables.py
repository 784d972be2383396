"""Unit tests of the debugger's Variables panel when the kernel is not stopped.

These run in-process on plain objects: nothing here starts a kernel or an event
loop, so there is no backend to vary. Wherever a child carries an
``evaluateName``, the tests evaluate it and check it gives back that very object.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import subprocess
import sys
import textwrap
import types
import weakref
from pathlib import Path
from typing import Any

import pytest

from akernel.debugging.variables import (
    DEFAULT_CHILDREN,
    MAX_CHILDREN,
    MAX_VALUE_LENGTH,
    VariableTable,
    children,
    describe,
    is_user_variable,
    namespace_variables,
    value_repr,
    variables_body,
)

# ---------------------------------------------------------------- helpers


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y
        self.__mangled = "private"  # stored as _Point__mangled: a single underscore

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y)

    @property
    def broken(self) -> int:
        raise ValueError("cannot compute")

    def method(self) -> None:
        pass


class Slotted:
    __slots__ = ("empty", "filled")

    def __init__(self) -> None:
        self.filled = [1, 2]


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


class LongRepr:
    def __repr__(self) -> str:
        return "L" * 5000


class WeirdList(collections.UserList):
    """A Sequence that is not a list: expanded through len and indexing."""


class UnmeasurableSequence(collections.abc.Sequence):
    def __len__(self) -> int:
        raise RuntimeError("no length")

    def __getitem__(self, index: int) -> int:
        raise IndexError(index)


class PartlyBrokenMapping(collections.abc.Mapping):
    def __init__(self) -> None:
        self._keys = ["good", "bad"]

    def __getitem__(self, key: str) -> int:
        if key == "bad":
            raise KeyError("bad is broken")
        return 1

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class HostileDict(dict):
    """A dict subclass whose overrides all raise: its storage is still readable."""

    def __iter__(self):
        raise RuntimeError("iter")

    def items(self):
        raise RuntimeError("items")

    def __getitem__(self, key):
        raise RuntimeError("getitem")


def by_name(variables: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in variables}


def expand(table: VariableTable, variable: dict[str, Any], **paging: Any) -> list[dict[str, Any]]:
    reference = variable["variablesReference"]
    assert reference > 0, variable
    body = variables_body(reference, table, **paging)
    assert body is not None
    return body["variables"]


def assert_evaluates(namespace: dict[str, Any], variable: dict[str, Any], expected: Any) -> None:
    value = eval(variable["evaluateName"], {}, namespace)
    assert value is expected, (variable, value)


# ---------------------------------------------------------------- which names


@pytest.mark.parametrize(
    "name",
    [
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "__annotations__",
        "__builtins__",
        "__builtin__",
        "__display__",
        "get_ipython",
        "exit",
        "quit",
        "In",
        "Out",
        "_oh",
        "_dh",
        "_ih",
        "_i",
        "_ii",
        "_iii",
        "_i1",
        "_i42",
        "_1",
        "_42",
        "_",
        "__",
        "___",
        "debugpy",
    ],
)
def test_kernel_and_ipython_names_are_hidden(name: str) -> None:
    assert not is_user_variable(name)


@pytest.mark.parametrize(
    "name",
    ["x", "_index", "_private", "ii", "i", "_id", "_ix", "_1st", "_i1a", "_iiii", "In_", "out"],
)
def test_user_names_are_shown(name: str) -> None:
    assert is_user_variable(name)


def test_a_real_ipython_namespace_shows_only_what_the_user_made(tmp_path: Path) -> None:
    """IPython's own names, whatever this version puts there, stay out of the panel."""
    script = textwrap.dedent(
        """
        import json
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
        from akernel.debugging.variables import VariableTable, namespace_variables

        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        shell = InteractiveShell(config=config)

        def names(hidden):
            listing = namespace_variables(shell.user_ns, VariableTable(), hidden)
            return [variable["name"] for variable in listing]

        for cell in ["a = 1", "a", "a + 1", "_index = [1]", "import os", "def f(): pass"]:
            shell.run_cell(cell, store_history=True)
        result = {
            "names": names(shell.user_ns_hidden),
            "names_without_hidden": names(None),
            "history": sorted(k for k in shell.user_ns if k.startswith("_i") or k[:2] == "_2"),
        }
        shell.run_cell("open = 'mine'", store_history=True)
        result["names_after_rebinding_open"] = names(shell.user_ns_hidden)
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "IPYTHONDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["names"] == ["_index", "a", "f", "os"]
    # The run really did create IPython's history names that had to be hidden.
    assert {"_2", "_i", "_ii", "_iii", "_i1", "_ih"} <= set(result["history"])
    # IPython binds its own open() in the namespace: only user_ns_hidden tells it apart.
    assert result["names_without_hidden"] == ["_index", "a", "f", "open", "os"]
    assert result["names_after_rebinding_open"] == ["_index", "a", "f", "open", "os"]


def test_hidden_mapping_hides_only_names_still_bound_to_its_objects() -> None:
    ipython_open = object()
    namespace = {"open": ipython_open, "np": 1, "mine": [1]}
    hidden = {"open": ipython_open, "np": 2, "absent": 3}
    variables = namespace_variables(namespace, VariableTable(), hidden)
    assert [variable["name"] for variable in variables] == ["mine", "np"]


# ---------------------------------------------------------------- the table


def test_table_hands_out_positive_distinct_references_and_resolves_them() -> None:
    table = VariableTable()
    first, second = [1], {"a": 1}
    ref_first = table.reference_for(first, "first")
    ref_second = table.reference_for(second, "second")
    assert ref_first > 0 and ref_second > 0 and ref_first != ref_second
    entry = table.lookup(ref_first)
    assert entry is not None and entry.value is first and entry.evaluate_name == "first"
    assert table.lookup(ref_second).value is second  # type: ignore[union-attr]
    # The same object by the same expression keeps its reference.
    assert table.reference_for(first, "first") == ref_first
    assert table.reference_for(first, "alias") != ref_first
    assert len(table) == 3


def test_table_unknown_references_resolve_to_none() -> None:
    table = VariableTable()
    reference = table.reference_for([1])
    assert table.lookup(reference + 1) is None
    assert table.lookup(0) is None
    assert table.lookup(-1) is None
    assert table.lookup(True) is None  # True == 1 but is no reference
    assert table.lookup("1") is None
    assert variables_body(reference + 1, table) is None
    assert variables_body(None, table) is None


def test_clear_invalidates_references_and_never_reuses_them() -> None:
    table = VariableTable()
    old = table.reference_for([1, 2], "x")
    assert variables_body(old, table) is not None
    table.clear()
    assert len(table) == 0
    assert table.lookup(old) is None
    assert variables_body(old, table) is None
    new = table.reference_for([3, 4], "x")
    assert new != old
    assert table.lookup(old) is None


def test_table_is_bounded() -> None:
    table = VariableTable(max_references=2)
    namespace = {f"list{i}": [i] for i in range(4)}
    variables = namespace_variables(namespace, table)
    references = [variable["variablesReference"] for variable in variables]
    assert references[0] > 0 and references[1] > 0
    assert references[2:] == [0, 0]
    assert len(table) == 2
    # A full table still describes values; they are just not expandable.
    assert [variable["value"] for variable in variables] == ["[0]", "[1]", "[2]", "[3]"]
    # Expanding a known node again reuses its reference instead of failing.
    assert expand(table, variables[0]) == expand(table, variables[0])
    table.clear()
    assert table.reference_for(namespace["list3"], "list3") > 0


@pytest.mark.parametrize("bad", [-1, 1.5, "10", None, True])
def test_table_rejects_a_bad_bound(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_references"):
        VariableTable(max_references=bad)


def test_table_releases_values_on_clear() -> None:
    table = VariableTable()
    value = Point(1, 2)
    describe("p", value, table, "p")
    alive = weakref.ref(value)
    del value
    gc.collect()
    assert alive() is not None  # held by the table while its reference is live
    table.clear()
    gc.collect()
    assert alive() is None


# ---------------------------------------------------------------- describe and repr


def test_describe_fields() -> None:
    table = VariableTable()
    variable = describe("n", 42, table, "n")
    assert variable == {
        "name": "n",
        "value": "42",
        "type": "int",
        "variablesReference": 0,
        "evaluateName": "n",
    }
    container = [1, 2]
    variable = describe("c", container, table, "c")
    assert variable["type"] == "list"
    assert table.lookup(variable["variablesReference"]).value is container  # type: ignore[union-attr]
    assert "evaluateName" not in describe("c", container, table)


def test_describe_type_is_the_qualified_name() -> None:
    class Outer:
        class Inner:
            pass

    variable = describe("i", Outer.Inner(), VariableTable(), "i")
    assert variable["type"].endswith("Outer.Inner")
    assert "<locals>" in variable["type"]


@pytest.mark.parametrize("value", [0, 1.5, "text", b"\xff\x00", None, True, 3j, [], {}, set(), ()])
def test_values_without_children_get_reference_zero(value: Any) -> None:
    table = VariableTable()
    assert describe("v", value, table, "v")["variablesReference"] == 0
    assert len(table) == 0


@pytest.mark.parametrize(
    "value",
    [
        [1, "two", 3.0, None],
        (1,),
        (1, 2),
        {"a": [1, {"b": (2,)}], 3: "c"},
        {1, 2, 3},
        frozenset({"x"}),
        collections.deque([1, 2, 3]),
        collections.deque([1], maxlen=5),
        [[], {}, (), set(), frozenset()],
        b"\xff\x00bytes",
        bytearray(b"abc"),
        "quote ' and \" and \n",
        collections.OrderedDict(a=1),
    ],
)
def test_short_values_are_shown_exactly_as_repr(value: Any) -> None:
    assert value_repr(value) == repr(value)


def test_self_containing_containers_are_shown_as_repr_shows_them() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    table: dict[str, Any] = {}
    table["self"] = table
    queue: collections.deque[Any] = collections.deque()
    queue.append(queue)
    assert value_repr(loop) == repr(loop) == "[1, [...]]"
    assert value_repr(table) == repr(table)
    assert value_repr(queue) == repr(queue)


@pytest.mark.parametrize(
    "value",
    [
        "s" * 5000,
        b"b" * 5000,
        list(range(100_000)),
        {i: "v" * 50 for i in range(1000)},
        set(range(10_000)),
        [["nested"] * 1000] * 10,
        collections.deque(range(10_000)),
        LongRepr(),
        [LongRepr()],
    ],
)
def test_long_values_are_truncated(value: Any) -> None:
    text = value_repr(value)
    assert len(text) == MAX_VALUE_LENGTH + 3
    assert text.endswith("...")
    assert repr(value).startswith(text[:-3])


def test_huge_list_repr_is_bounded_and_correct_up_to_the_cut() -> None:
    huge = [0] * 2_000_000
    text = describe("huge", huge, VariableTable(), "huge")["value"]
    assert text.startswith("[0, 0, 0")
    assert text.endswith("...") and len(text) == MAX_VALUE_LENGTH + 3


def test_failing_repr_is_shown_not_raised() -> None:
    variable = describe("bad", BadRepr(), VariableTable(), "bad")
    assert variable["value"] == "<repr failed: ValueError: no repr for you>"
    assert variable["type"] == "BadRepr"
    # Inside a container the container's repr fails too, as repr() would.
    assert value_repr([1, BadRepr()]) == "<repr failed: ValueError: no repr for you>"


def test_failing_repr_whose_error_cannot_be_printed() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("nor this")

    class Raises:
        def __repr__(self) -> str:
            raise Unprintable()

    assert value_repr(Raises()) == "<repr failed: Unprintable>"
    assert describe("r", Raises(), VariableTable())["type"].endswith("<locals>.Raises")


def test_a_huge_int_does_not_break_the_listing() -> None:
    text = value_repr(10**5000)
    assert text.startswith("<repr failed: ValueError")


# ---------------------------------------------------------------- children


def test_dict_children_by_key_repr_with_working_expressions() -> None:
    key_object = object()
    data = {"a": [1], 1: "one", 2.5: "float", (1, "z"): "tuple", None: 0, float("nan"): "nan"}
    data[key_object] = "object"
    namespace = {"data": data}
    table = VariableTable()
    (top,) = namespace_variables(namespace, table)
    items = by_name(expand(table, top))
    assert set(items) == {
        "'a'",
        "1",
        "2.5",
        "(1, 'z')",
        "None",
        "nan",
        repr(key_object),
    }
    assert items["'a'"]["evaluateName"] == "data['a']"
    assert items["(1, 'z')"]["evaluateName"] == "data[(1, 'z')]"
    for name in ["'a'", "1", "2.5", "(1, 'z')", "None"]:
        key = eval(name)
        assert_evaluates(namespace, items[name], data[key])
    # No expression would give these back: nan is not a literal, an object has no source.
    assert "evaluateName" not in items["nan"]
    assert "evaluateName" not in items[repr(key_object)]
    assert items[repr(key_object)]["value"] == "'object'"


def test_dict_subclass_overrides_are_not_called() -> None:
    data = HostileDict(a=1, b=[2])
    table = VariableTable()
    variable = describe("data", data, table, "data")
    items = by_name(expand(table, variable))
    assert items["'a'"]["value"] == "1"
    assert items["'b'"]["value"] == "[2]"


@pytest.mark.parametrize(
    "value",
    [
        ["a", ["b"], 3],
        ("a", ["b"], 3),
        collections.deque(["a", ["b"], 3]),
        range(10, 13),
        WeirdList(["a", ["b"], 3]),
    ],
)
def test_sequence_children_by_index_with_working_expressions(value: Any) -> None:
    namespace = {"seq": value}
    table = VariableTable()
    (top,) = namespace_variables(namespace, table)
    items = expand(table, top)
    assert [item["name"] for item in items] == ["0", "1", "2"]
    for index, item in enumerate(items):
        assert item["evaluateName"] == f"seq[{index}]"
        assert_evaluates(namespace, item, value[index])


@pytest.mark.parametrize("value", [{"x", "y", ("t",)}, frozenset({1, 2, 3})])
def test_set_children_by_position_without_expressions(value: Any) -> None:
    table = VariableTable()
    items = expand(table, describe("s", value, table, "s"))
    assert [item["name"] for item in items] == [str(i) for i in range(len(value))]
    assert all("evaluateName" not in item for item in items)
    assert sorted(item["value"] for item in items) == sorted(repr(v) for v in value)
    # An element with children is still expandable, by reference only.
    if ("t",) in value:
        (tuple_item,) = [item for item in items if item["value"] == "('t',)"]
        (inner,) = expand(table, tuple_item)
        assert inner["value"] == "'t'" and "evaluateName" not in inner


def test_object_children_are_attributes_and_properties() -> None:
    point = Point(3, -4)
    namespace = {"point": point}
    table = VariableTable()
    (top,) = namespace_variables(namespace, table)
    items = by_name(expand(table, top))
    # Attributes and properties, no dunders, no methods.
    assert list(items) == ["_Point__mangled", "broken", "norm", "x", "y"]
    assert items["x"]["value"] == "3" and items["norm"]["value"] == "7"
    for name in ["x", "y", "_Point__mangled"]:
        assert_evaluates(namespace, items[name], getattr(point, name))
    assert items["norm"]["evaluateName"] == "point.norm"


def test_a_failing_property_shows_its_error_and_spoils_nothing_else() -> None:
    table = VariableTable()
    items = by_name(expand(table, describe("p", Point(1, 2), table, "p")))
    assert items["broken"]["value"] == "<getattr failed: ValueError: cannot compute>"
    assert items["broken"]["variablesReference"] == 0
    assert items["x"]["value"] == "1"
    assert items["norm"]["value"] == "3"


def test_slots_are_children_and_unset_slots_are_left_out() -> None:
    value = Slotted()
    namespace = {"value": value}
    table = VariableTable()
    (top,) = namespace_variables(namespace, table)
    (filled,) = expand(table, top)
    assert filled["name"] == "filled" and filled["value"] == "[1, 2]"
    assert_evaluates(namespace, filled, value.filled)
    value.empty = "now set"
    table.clear()
    (top,) = namespace_variables(namespace, table)
    assert [item["name"] for item in expand(table, top)] == ["empty", "filled"]


def test_attribute_names_that_are_not_identifiers_use_getattr() -> None:
    value = types.SimpleNamespace()
    setattr(value, "with-dash", 1)
    setattr(value, "class", 2)
    namespace = {"value": value}
    table = VariableTable()
    (top,) = namespace_variables(namespace, table)
    items = by_name(expand(table, top))
    assert items["with-dash"]["evaluateName"] == "getattr(value, 'with-dash')"
    assert items["class"]["evaluateName"] == "getattr(value, 'class')"
    assert_evaluates(namespace, items["with-dash"], 1)
    assert_evaluates(namespace, items["class"], 2)


def test_modules_functions_and_classes_are_listed() -> None:
    def function() -> None:
        pass

    namespace = {"os": os, "function": function, "Point": Point, "__name__": "__main__"}
    table = VariableTable()
    variables = by_name(namespace_variables(namespace, table))
    assert list(variables) == ["Point", "function", "os"]
    assert variables["function"]["variablesReference"] == 0  # nothing inside to show
    os_items = by_name(expand(table, variables["os"], count=MAX_CHILDREN))
    assert os_items["path"]["evaluateName"] == "os.path"
    assert_evaluates(namespace, os_items["path"], os.path)
    class_items = by_name(expand(table, variables["Point"]))
    assert {"method", "norm", "broken"} <= set(class_items)
    assert class_items["norm"]["type"] == "property"


def test_nested_expansion_through_references() -> None:
    config = {"layers": [Point(1, 2), {"inner": ("deep",)}]}
    namespace = {"config": config}
    table = VariableTable()
    (top,) = namespace_variables(namespace, table)
    (layers,) = expand(table, top)
    assert layers["evaluateName"] == "config['layers']"
    first, second = expand(table, layers)
    x = by_name(expand(table, first))["x"]
    assert x["evaluateName"] == "config['layers'][0].x"
    assert_evaluates(namespace, x, config["layers"][0].x)  # type: ignore[union-attr]
    (inner,) = expand(table, second)
    (deep,) = expand(table, inner)
    assert deep["evaluateName"] == "config['layers'][1]['inner'][0]"
    assert_evaluates(namespace, deep, "deep")


def test_a_failing_item_shows_its_error_and_spoils_nothing_else() -> None:
    table = VariableTable()
    items = by_name(expand(table, describe("m", PartlyBrokenMapping(), table, "m")))
    assert items["'good'"]["value"] == "1"
    assert items["'bad'"]["value"].startswith("<getitem failed: KeyError:")


def test_a_container_that_cannot_be_listed_gives_one_error_entry() -> None:
    table = VariableTable()
    broken = UnmeasurableSequence()
    assert describe("b", broken, table, "b")["variablesReference"] == 0
    (entry,) = children(broken, table, "b")
    assert entry["value"] == "<listing children failed: RuntimeError: no length>"
    assert entry["variablesReference"] == 0


def test_scalars_have_no_children() -> None:
    assert children(5, VariableTable(), "x") == []
    assert children("text", VariableTable(), "x") == []


# ---------------------------------------------------------------- paging


def test_start_and_count_select_a_page() -> None:
    value = list(range(1000))
    table = VariableTable()
    top = describe("v", value, table, "v")
    page = expand(table, top, start=10, count=5)
    assert [item["name"] for item in page] == ["10", "11", "12", "13", "14"]
    assert [item["value"] for item in page] == ["10", "11", "12", "13", "14"]
    assert [item["name"] for item in expand(table, top, start=998, count=10)] == ["998", "999"]
    assert expand(table, top, start=5000, count=10) == []


@pytest.mark.parametrize(
    "value",
    [
        list(range(1000)),
        {f"k{i}": i for i in range(1000)},
        set(range(1000)),
        collections.deque(range(1000)),
        range(1000),
        types.SimpleNamespace(**{f"a{i}": i for i in range(1000)}),
    ],
    ids=["list", "dict", "set", "deque", "range", "attributes"],
)
def test_paging_works_for_every_kind(value: Any) -> None:
    table = VariableTable()
    top = describe("v", value, table, "v")
    whole = expand(table, top, count=1000)
    assert len(whole) == 1000
    pages = [expand(table, top, start=start, count=250) for start in range(0, 1000, 250)]
    assert [item["value"] for page in pages for item in page] == [i["value"] for i in whole]


@pytest.mark.parametrize("count", [None, 0])
def test_without_count_a_default_cap_applies_and_says_so(count: Any) -> None:
    value = [7] * 2_000_000
    table = VariableTable()
    top = describe("v", value, table, "v")
    variables = expand(table, top, count=count)
    assert len(variables) == DEFAULT_CHILDREN + 1
    assert variables[DEFAULT_CHILDREN - 1]["name"] == str(DEFAULT_CHILDREN - 1)
    marker = variables[-1]
    assert marker["value"] == f"{2_000_000 - DEFAULT_CHILDREN} more not shown"
    assert marker["variablesReference"] == 0 and "evaluateName" not in marker
    # The cap counts from start.
    later = expand(table, top, start=1_999_900)
    assert [item["name"] for item in later] == [str(i) for i in range(1_999_900, 2_000_000)]


def test_exactly_the_default_number_of_children_has_no_marker() -> None:
    table = VariableTable()
    variables = expand(table, describe("v", list(range(DEFAULT_CHILDREN)), table, "v"))
    assert len(variables) == DEFAULT_CHILDREN
    assert variables[-1]["name"] == str(DEFAULT_CHILDREN - 1)


def test_an_explicit_count_is_capped() -> None:
    table = VariableTable()
    top = describe("v", [0] * (MAX_CHILDREN + 50), table, "v")
    assert len(expand(table, top, count=MAX_CHILDREN + 50)) == MAX_CHILDREN


@pytest.mark.parametrize(
    "paging",
    [{"start": -1}, {"start": "0"}, {"start": 1.0}, {"start": True}, {"count": -5}, {"count": "3"}],
)
def test_bad_paging_arguments_are_a_clear_error(paging: dict[str, Any]) -> None:
    table = VariableTable()
    reference = describe("v", [1, 2], table, "v")["variablesReference"]
    with pytest.raises(ValueError, match=r"'start'|'count'"):
        variables_body(reference, table, **paging)


# ---------------------------------------------------------------- the namespace


def test_namespace_is_filtered_sorted_and_named() -> None:
    namespace: dict[Any, Any] = {
        "zeta": 1,
        "alpha": [1],
        "_index": 2,
        "_i3": "x = 1",
        "_3": 5,
        "In": [],
        "get_ipython": lambda: None,
        "__builtins__": {},
        "Beta": 3,
        "not an identifier": 4,
        7: "a non-string key",
    }
    variables = namespace_variables(namespace, VariableTable())
    assert [variable["name"] for variable in variables] == [
        "Beta",
        "_index",
        "alpha",
        "not an identifier",
        "zeta",
    ]
    named = by_name(variables)
    assert named["zeta"]["evaluateName"] == "zeta"
    assert "evaluateName" not in named["not an identifier"]
    assert named["alpha"]["variablesReference"] > 0
