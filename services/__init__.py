"""The project's own services; installed as ``hil.resources.services`` (see hil/resources)."""
