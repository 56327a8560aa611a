"""HIL suites that ship with embserve-hil, to run on any target from an installed package.

    pytest --pyargs hil.suites.temperature --target serial --board frdm_k64f --serial-port /dev/ttyACM0 ...

Each module is a pytest test module (the plugin's fixtures; ``-m hil``):
``temperature``, the temperature service end to end, and ``thermostat``, a
service input written the board's way (shell or LwM2M Write) reaching the
service. The repository's ``tests/hil`` runs ``temperature`` by importing it;
``thermostat`` runs in tests/integration/test_lwm2m_service_inputs.py (and
wherever a bench names it).
"""
