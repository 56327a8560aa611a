"""HIL suites that ship with embserve-hil, to run on any target from an installed package.

    pytest --pyargs hil.suites.temperature --target serial --board frdm_k64f --serial-port /dev/ttyACM0 ...

Each module is a pytest test module (the plugin's fixtures; ``-m hil``). The
repository's ``tests/hil`` runs the same modules by importing them.
"""
