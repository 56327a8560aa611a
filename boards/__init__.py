"""The board catalog; installed as ``hil.resources.boards`` (see hil/resources)."""
