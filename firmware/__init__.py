"""The reference firmware's sources; installed as ``hil.resources.firmware`` (see hil/resources)."""
