"""LwM2M layer shared by the simulated node and the gateway: model and codecs."""

from .model import (  # noqa: F401
    DEFINITIONS,
    CodecError,
    Content,
    LwM2MError,
    ObjectDef,
    ObjLnk,
    Path,
    ResourceDef,
    ResourceType,
    UpdateResult,
    UpdateState,
    resource_def,
    resource_type,
)
