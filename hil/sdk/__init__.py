"""embServe SDK: build C services into udynlink modules and service.json.

See :mod:`hil.sdk.builder` (entry point :func:`build_service`),
:mod:`hil.sdk.config` (``service.toml``), :mod:`hil.sdk.packer` (ELF -> UDLM)
and ``include/embserve.h`` (the API a service is written against).
"""

from .builder import BuildError, build_service

__all__ = ["BuildError", "build_service"]
