"""Device backends behind one Target interface (sim, qemu, renode, serial)."""

from .base import CapabilityMissing, Target, TargetConfig, TargetError, TargetUnavailable, get_target_class, known_targets, register_target  # noqa: F401
