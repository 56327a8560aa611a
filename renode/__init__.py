"""Renode platforms and scripts; installed as ``hil.resources.renode`` (see hil/resources)."""
