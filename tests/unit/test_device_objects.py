"""The node's object store: typed values, server operations, errors, hooks, listeners."""

from __future__ import annotations

import asyncio

import pytest

from hil.device.objects import (
    BadRequest,
    Change,
    MethodNotAllowed,
    NotFound,
    ObjectHandler,
    ObjectStore,
)
from hil.lwm2m.model import ObjectDef, ObjLnk, Path, ResourceDef, ResourceType


def device_store() -> ObjectStore:
    store = ObjectStore()
    store.add_object(3, fixed=True)
    store.add_instance(
        3,
        0,
        {
            0: "embserve-hil",
            4: None,
            11: [0],
            13: 0,
            14: "+01:00",
            17: "embServe Node",
            21: 256,
        },
    )
    store.add_object(9)
    store.add_object(3303)
    store.add_instance(3303, 0, {5700: 21.5, 5701: "Cel"})
    store.add_object(35003)
    return store


# ---------------------------------------------------------------------- read


def test_read_levels_flatten_to_content():
    store = device_store()
    assert store.read("/3/0/17") == {Path(3, 0, 17): "embServe Node"}
    assert store.read("/3/0/11") == {Path(3, 0, 11, 0): 0}
    assert store.read("/3/0/11/0") == {Path(3, 0, 11, 0): 0}
    instance = store.read("/3/0")
    assert instance[Path(3, 0, 21)] == 256 and Path(3, 0, 4) not in instance  # executables are not read
    assert store.read("/3303") == {
        Path(3303, 0, 5700): 21.5,
        Path(3303, 0, 5701): "Cel",
    }
    assert store.read("/9") == {}


@pytest.mark.parametrize(
    "path, error, words",
    [
        ("/5", NotFound, "object 5 is not on this device"),
        ("/3/1", NotFound, "instance /3/1 does not exist"),
        ("/3/0/999", NotFound, "has no resource 999"),
        ("/3/0/18", NotFound, "not present"),
        ("/3/0/4", MethodNotAllowed, "not readable"),
        ("/3/0/11/7", NotFound, "no resource instance /3/0/11/7"),
        ("/3/0/17/0", NotFound, "single resource"),
    ],
)
def test_read_errors_carry_code_and_reason(path, error, words):
    with pytest.raises(error, match=words) as info:
        device_store().read(path)
    assert info.value.code == {NotFound: "4.04", MethodNotAllowed: "4.05"}[error]


# ---------------------------------------------------------------------- write


def test_write_replace_and_partial_on_resources():
    store = device_store()
    store.write("/3/0/14", {Path(3, 0, 14): "+02:00"})
    assert store.get("/3/0/14") == "+02:00"
    store.write("/3/0", {Path(3, 0, 15): "Europe/Madrid"}, replace=False)
    assert store.get("/3/0/15") == "Europe/Madrid" and store.get("/3/0/14") == "+02:00"


def test_replace_on_an_instance_drops_optional_writable_resources_not_sent():
    store = device_store()
    store.write("/3/0", {Path(3, 0, 15): "UTC"}, replace=True)
    assert store.get("/3/0/15") == "UTC"
    assert not store.exists("/3/0/14")  # UTC Offset was optional, writable and not in the Replace
    assert store.get("/3/0/17") == "embServe Node"  # read-only resources stay


def test_write_multiple_resource_replace_swaps_and_partial_merges():
    # DEFINITIONS has no writable multiple resource, so this store gets its own object
    routes = ObjectDef(
        42000,
        "Routes",
        True,
        {1: ResourceDef(1, "Hops", ResourceType.STRING, "RW", multiple=True)},
    )
    store = ObjectStore({42000: routes})
    store.add_object(42000)
    store.add_instance(42000, 0, {1: ["a", "b"]})
    assert store.get("/42000/0/1") == {0: "a", 1: "b"}
    store.write("/42000/0/1", {Path(42000, 0, 1, 5): "x"}, replace=True)
    assert store.get("/42000/0/1") == {5: "x"}
    store.write("/42000/0/1", {Path(42000, 0, 1, 6): "y"}, replace=False)
    assert store.get("/42000/0/1") == {5: "x", 6: "y"}
    store.write("/42000/0/1/5", {Path(42000, 0, 1, 5): "z"}, replace=True)  # one instance addressed
    assert store.get("/42000/0/1") == {5: "z", 6: "y"}
    with pytest.raises(BadRequest, match="its values come by resource instance"):
        store.write("/42000/0/1", {Path(42000, 0, 1): "flat"})


def test_device_side_set_of_multiple_resources():
    store = ObjectStore()
    store.add_object(4)
    store.add_instance(4, 0, {4: ["10.0.0.1", "10.0.0.2"]})
    assert store.get("/4/0/4") == {0: "10.0.0.1", 1: "10.0.0.2"}
    store.set("/4/0/4", {5: "fe80::1"})
    store.set("/4/0/4/6", "fe80::2")
    assert store.read("/4/0/4") == {
        Path(4, 0, 4, 5): "fe80::1",
        Path(4, 0, 4, 6): "fe80::2",
    }
    with pytest.raises(BadRequest, match="multiple resource: give a list"):
        store.set("/4/0/4", "10.0.0.3")


def test_write_type_checking_rejects_wrong_types_with_4_00():
    store = device_store()
    with pytest.raises(BadRequest, match=r"/3/0/13 \(Current Time\): integer expected, got 'noon'") as info:
        store.write("/3/0/13", {Path(3, 0, 13): "noon"})
    assert info.value.code == "4.00"
    with pytest.raises(BadRequest, match="string expected"):
        store.write("/3/0/14", {Path(3, 0, 14): 5})
    assert store.get("/3/0/14") == "+01:00"  # nothing changed


def test_write_is_all_or_nothing():
    store = device_store()
    with pytest.raises(MethodNotAllowed):
        store.write("/3/0", {Path(3, 0, 14): "+03:00", Path(3, 0, 17): "hacked"}, replace=False)
    assert store.get("/3/0/14") == "+01:00" and store.get("/3/0/17") == "embServe Node"


@pytest.mark.parametrize(
    "path, content, error, words",
    [
        ("/3/0/17", {Path(3, 0, 17): "x"}, MethodNotAllowed, "not writable"),
        ("/3/0/4", {Path(3, 0, 4): None}, MethodNotAllowed, "not writable"),
        ("/3", {Path(3, 0, 14): "x"}, MethodNotAllowed, "write on object /3"),
        ("/3/0/999", {Path(3, 0, 999): 1}, NotFound, "no resource 999"),
        ("/3/7/14", {Path(3, 7, 14): "x"}, NotFound, "instance /3/7 does not exist"),
        ("/3/0/14", {Path(3, 0, 15): "x"}, BadRequest, "not below it"),
        ("/3/0/14", {}, BadRequest, "carries no value"),
    ],
)
def test_write_errors(path, content, error, words):
    with pytest.raises(error, match=words):
        device_store().write(path, content)


def test_opaque_write_keeps_bytes():
    store = device_store()
    store.create("/9", iid=1000)
    package = bytes(range(256)) * 12
    store.write("/9/1000/2", {Path(9, 1000, 2): bytearray(package)})
    assert store.get("/9/1000/2") == package and type(store.get("/9/1000/2")) is bytes


# ---------------------------------------------------------------------- execute


def test_execute_only_executable_resources():
    store = device_store()
    assert store.execute("/3/0/4") is None
    with pytest.raises(MethodNotAllowed, match="not executable") as info:
        store.execute("/3/0/17")
    assert info.value.code == "4.05"
    with pytest.raises(NotFound, match="not supported by this instance"):
        store.execute("/3/0/5")  # Factory Reset: defined, but this device lacks it
    with pytest.raises(MethodNotAllowed, match="execute needs a resource path"):
        store.execute("/3/0")


# ---------------------------------------------------------------------- create / delete


def test_create_fills_mandatory_defaults_and_picks_free_ids():
    store = device_store()
    assert store.create("/9", iid=1000) == Path(9, 1000)
    values = store.read("/9/1000")
    assert values[Path(9, 1000, 0)] == "" and values[Path(9, 1000, 7)] == 0 and values[Path(9, 1000, 12)] is False
    assert store.create("/9") == Path(9, 0)
    assert store.create("/35003", {Path(35003, 5, 27400): ObjLnk(9, 1000)}) == Path(35003, 5)
    assert store.get("/35003/5/27400") == ObjLnk(9, 1000)
    assert store.objects()[9] == [0, 1000]


@pytest.mark.parametrize(
    "path, kwargs, error, words",
    [
        ("/3", {}, MethodNotAllowed, "may not create instances of object 3"),
        ("/9/1", {}, MethodNotAllowed, "create needs an object path"),
        ("/1234", {}, NotFound, "object 1234 is not on this device"),
        ("/3303", {"iid": 0}, BadRequest, "already exists"),
        ("/9", {"content": {Path(9, 1, 0): 5}}, BadRequest, "string expected"),
        ("/9", {"content": {Path(9, 1, 77): 5}}, BadRequest, "no resource 77"),
        (
            "/9",
            {"content": {Path(9, 1, 0): "a", Path(9, 2, 0): "b"}},
            BadRequest,
            "expected one",
        ),
    ],
)
def test_create_errors(path, kwargs, error, words):
    with pytest.raises(error, match=words):
        device_store().create(path, **kwargs)


def test_delete_instances_but_not_fixed_objects():
    store = device_store()
    store.create("/9", iid=1000)
    store.write_attributes("/9/1000", {"pmin": "5"})
    store.delete("/9/1000")
    assert store.instances(9) == [] and store.attributes("/9/1000") == {}
    with pytest.raises(NotFound):
        store.delete("/9/1000")
    with pytest.raises(MethodNotAllowed, match="may not delete /3/0"):
        store.delete("/3/0")
    with pytest.raises(MethodNotAllowed, match="delete needs an instance path"):
        store.delete("/9")


# ---------------------------------------------------------------------- discover / attributes


def test_discover_lists_instances_resources_dim_and_attributes():
    store = device_store()
    store.write_attributes("/3/0/11", {"pmin": "10"})
    links = {link.path: link.attrs for link in store.discover("/3")}
    assert links["/3"] == {} and links["/3/0"] == {}
    assert links["/3/0/11"] == {"dim": "1", "pmin": "10"}
    assert "/3/0/4" in links and "/3/0/18" not in links
    assert [link.path for link in store.discover("/3/0/21")] == ["/3/0/21"]


def test_attributes_are_validated_inherited_and_removable():
    store = device_store()
    store.write_attributes("/3303", {"pmax": "60"})
    store.write_attributes("/3303/0/5700", {"pmin": "2", "st": "0.5"})
    assert store.effective_attributes("/3303/0/5700") == {
        "pmax": "60",
        "pmin": "2",
        "st": "0.5",
    }
    store.write_attributes("/3303/0/5700", {"st": None})
    assert store.attributes("/3303/0/5700") == {"pmin": "2"}
    with pytest.raises(BadRequest, match="unknown attribute 'foo'"):
        store.write_attributes("/3303/0/5700", {"foo": "1"})
    with pytest.raises(BadRequest, match="non-negative whole number"):
        store.write_attributes("/3303/0/5700", {"pmin": "-1"})
    with pytest.raises(BadRequest, match="pmax=1 is below pmin=2"):
        store.write_attributes("/3303/0/5700", {"pmax": "1"})
    with pytest.raises(NotFound):
        store.write_attributes("/3303/4", {"pmin": "1"})


# ---------------------------------------------------------------------- device side


def test_set_type_checks_and_get_reads_values():
    store = device_store()
    store.set("/3303/0/5700", 23)
    assert store.get("/3303/0/5700") == 23.0 and type(store.get("/3303/0/5700")) is float
    with pytest.raises(BadRequest, match="float expected, got 'warm'"):
        store.set("/3303/0/5700", "warm")
    with pytest.raises(BadRequest, match="boolean expected"):
        store.add_instance(9, 1, {12: 1})


def test_listeners_hear_value_changes_once_and_structure_changes():
    store = device_store()
    changes: list[Change] = []
    store.add_listener(changes.append)
    store.set("/3303/0/5700", 22.0)
    store.set("/3303/0/5700", 22.0)  # same value: no change
    store.create("/9", iid=1000)
    store.delete("/9/1000")
    assert changes == [
        Change("value", Path(3303, 0, 5700)),
        Change("created", Path(9, 1000)),
        Change("deleted", Path(9, 1000)),
    ]


# ---------------------------------------------------------------------- hooks


class RecordingHandler(ObjectHandler):
    """A handler that records each hook call and can refuse some."""

    def __init__(self):
        self.calls: list[tuple[str, Path, object]] = []

    def on_read(self, path, value):
        self.calls.append(("read", path, value))
        return "computed" if path.res == 0 else value

    def on_write(self, path, value):
        self.calls.append(("write", path, value))
        if value == b"bad":
            raise BadRequest(f"{path}: not a service package")
        self.store.set(Path(path.obj, path.inst, 7), 1)  # hooks may update other resources

    def on_execute(self, path, arg):
        self.calls.append(("execute", path, arg))

    def on_create(self, path):
        self.calls.append(("create", path, None))
        if path.inst == 13:
            raise BadRequest("13 is unlucky")

    def on_delete(self, path):
        self.calls.append(("delete", path, None))


def test_handler_hooks_are_called_and_may_refuse():
    store = ObjectStore()
    handler = RecordingHandler()
    store.add_object(9, handler)
    assert handler.store is store and handler.oid == 9
    store.create("/9", iid=1000)
    assert store.read("/9/1000/0") == {Path(9, 1000, 0): "computed"}
    store.write("/9/1000/2", {Path(9, 1000, 2): b"pkg"})
    assert store.get("/9/1000/7") == 1
    with pytest.raises(BadRequest, match="not a service package"):
        store.write("/9/1000/2", {Path(9, 1000, 2): b"bad"})
    assert store.get("/9/1000/2") == b"pkg"
    store.execute("/9/1000/4", "0='x'")  # Install is mandatory, so a created instance has it
    with pytest.raises(BadRequest, match="unlucky"):
        store.create("/9", iid=13)
    assert store.instances(9) == [1000]
    store.delete("/9/1000")
    kinds = [c[0] for c in handler.calls]
    assert kinds[:1] == ["create"] and "write" in kinds and kinds[-1] == "delete"
    assert ("execute", Path(9, 1000, 4), "0='x'") in handler.calls


def test_execute_hook_may_return_an_awaitable():
    store = ObjectStore()

    class Installer(ObjectHandler):
        def on_execute(self, path, arg):
            async def install():
                self.store.set(Path(9, path.inst, 7), 4)

            return install()

    store.add_object(9, Installer())
    store.create("/9", iid=1)
    pending = store.execute("/9/1/4")
    assert pending is not None
    asyncio.run(pending)
    assert store.get("/9/1/7") == 4
