"""What an embServe service is: its manifest, its module and the SDK ABI between them and the firmware, and the runtime that executes one.

* :mod:`hil.service.manifest`: ``service.json``, parsed and checked;
* :mod:`hil.service.udlm`: the udynlink module it carries;
* :mod:`hil.service.sdk_api`: the SDK ABI (imports, exports, io and sensor structs, printf);
* :mod:`hil.service.cpu`: the Cortex-M4 (unicorn) a module runs on;
* :mod:`hil.service.runtime`: loads modules and runs them on a device's clock.

The device simulator hosts the runtime, the far-edge path and the SDK
produce and check manifests; this package imports none of them.
"""
