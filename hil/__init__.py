"""embserve-hil: device simulator and hardware-in-the-loop harness for embServe devices."""

__version__ = "0.1.0"
