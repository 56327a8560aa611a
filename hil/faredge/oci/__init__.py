"""OCI packaging of embServe services: push artifacts and multi-platform
images to a registry, resolve a reference for ``zephyr/arm/v7`` and pull
``service.json`` the way FITA's far-edge-kubelet does.

All network functions are coroutines::

    result = await push_artifact(Path("service.json"), "127.0.0.1:5000/hil/temperature:1.0")
    found = await resolve("127.0.0.1:5000/hil/temperature:1.0", cache_dir=tmp)
"""

from .client import Credentials, RegistryClient, TransportOptions
from .credentials import CredentialsError, find_credentials
from .content import (
    ANNOTATION_CREATED,
    ANNOTATION_TITLE,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMBSERVE_LAYER,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    digest_of,
)
from .errors import (
    AuthenticationError,
    DigestMismatch,
    InvalidReference,
    LayerNotFound,
    ManifestError,
    OciError,
    PlatformNotFound,
    RegistryError,
    RegistryUnreachable,
    SizeMismatch,
)
from .images import DEFAULT_ARTIFACT_CONFIG, Image, build_artifact, build_index, build_placeholder_image
from .push import PushResult, push_artifact, push_image, push_multiplatform
from .reference import ZEPHYR_ARMV7, Platform, Reference, parse_platform, parse_reference
from .resolve import Resolved, cache_path, default_cache_dir, resolve

__all__ = [
    "ANNOTATION_CREATED", "ANNOTATION_TITLE", "DEFAULT_ARTIFACT_CONFIG", "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST", "EMBSERVE_LAYER", "OCI_CONFIG", "OCI_INDEX", "OCI_LAYER_TAR_GZIP",
    "OCI_MANIFEST", "ZEPHYR_ARMV7", "AuthenticationError", "Credentials", "CredentialsError", "DigestMismatch",
    "Image", "InvalidReference", "LayerNotFound", "ManifestError", "OciError", "Platform",
    "PlatformNotFound", "PushResult", "Reference", "RegistryClient", "RegistryError",
    "RegistryUnreachable", "Resolved", "SizeMismatch", "TransportOptions", "build_artifact",
    "build_index", "build_placeholder_image", "cache_path", "default_cache_dir", "digest_of", "find_credentials",
    "parse_platform", "parse_reference", "push_artifact", "push_image", "push_multiplatform",
    "resolve",
]
