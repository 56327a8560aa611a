"""Node labels as FITA's far-edge-node-watcher derives them.

A node whose Device Type (/3/0/17) says ``embServe Node`` gets
``extra.resources.fhp/embserve=true``; each sensor id listed in a DevCapMgmt
(/15) Property becomes ``extra.resources.fhp/<sensor>=true``. Every such node
carries the taint ``fita.fhp.pt/type=far-edge:NoSchedule``.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..lwm2m import Path

LABEL_PREFIX = "extra.resources.fhp/"
FAR_EDGE_TAINT = ("fita.fhp.pt/type", "far-edge", "NoSchedule")
DEVICE_TYPE = "embServe Node"

# DevCapMgmt sensor ids (protocol doc, section 3) -> the label names FITA's
# watcher gives them (extra.resources.fhp/temperature_sensor=true, ...).
SENSOR_NAMES = {
    0: "light_sensor", 1: "presence_sensor", 2: "temperature_sensor", 4: "pressure_sensor",
    133: "accelerometer", 134: "gyroscope", 135: "magnetometer", 136: "humidity_sensor", 137: "microphone",
}
SENSOR_IDS = {name: sid for sid, name in SENSOR_NAMES.items()}


def labels_from(device_type: str | None, capability_properties: Iterable[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    if device_type and DEVICE_TYPE in device_type:
        labels[LABEL_PREFIX + "embserve"] = "true"
    for prop in capability_properties:
        for part in str(prop).split(";"):
            part = part.strip()
            if part.isdigit() and int(part) in SENSOR_NAMES:
                labels[LABEL_PREFIX + SENSOR_NAMES[int(part)]] = "true"
    return labels


async def node_labels(gateway: Any, endpoint: str) -> dict[str, str]:
    """Read /3/0/17 and every /15 instance through the gateway and derive the labels."""
    device_type = (await gateway.read(endpoint, "/3/0/17")).get(Path(3, 0, 17))
    props: list[str] = []
    reg = gateway.registration(endpoint)
    for inst in reg.available_instances.get(15, []):
        content = await gateway.read(endpoint, f"/15/{inst}")
        group = content.get(Path(15, inst, 1))
        if group in (None, 0, "0"):
            prop = content.get(Path(15, inst, 0))
            if prop is not None:
                props.append(str(prop))
    return labels_from(device_type, props)


# IPSO objects a service's data model names -> the DevCapMgmt sensor id the node must list.
SENSOR_OF_OBJECT = {3303: 2, 3304: 136, 3315: 4, 3301: 0, 3302: 1}


def required_labels(data_model: Iterable[str] | None) -> dict[str, str]:
    """Labels a manifest's ``data_model`` (``lwm2m:urn:oma:lwm2m:ext:3303``) implies the node has."""
    needed = {}
    for entry in data_model or ():
        tail = str(entry).rsplit(":", 1)[-1]
        if tail.isdigit() and int(tail) in SENSOR_OF_OBJECT:
            needed[LABEL_PREFIX + SENSOR_NAMES[SENSOR_OF_OBJECT[int(tail)]]] = "true"
    return needed
