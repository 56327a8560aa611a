"""FITA's shared vocabulary: what the gateway's northbound side and the far-edge path agree on.

* :mod:`hil.fita.labels`: the node labels FITA's node watcher derives, and those a service needs;
* :mod:`hil.fita.sdf`: SDF object and property names and values for LwM2M objects;
* :mod:`hil.fita.northbound`: SDF over MQTT: topics, requests, answers, announces;
* :mod:`hil.fita.mqtt`: the MQTT v5 client both sides talk through.

Neither side owns these: the gateway (:mod:`hil.gateway`) and the far-edge
channels (:mod:`hil.faredge`) import them, and this package imports neither.
"""
