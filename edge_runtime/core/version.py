"""The toolkit's version: one definition, read by pyproject.toml, the ``--version`` options and the MQTT discovery."""

__version__ = "0.1.0"
