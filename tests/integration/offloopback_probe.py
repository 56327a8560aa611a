"""Run inside the test's network namespace: what a client on the lab network gets from the fleet's APIs.

    python offloopback_probe.py REST_API_URL TOKEN MQTT_HOST MQTT_PORT CA_FILE MQTT_USER MQTT_PASSWORD_FILE

Prints one JSON object: the HTTP status of REST calls without, with a wrong and with the right
token, of the fleet page without and with the token as a browser sends it (basic), and the MQTT outcome of an anonymous client over TLS, a plain-TCP client and the right user.
"""

import base64
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt


def rest(url: str, token: str | None, *, path: str = "/clients", scheme: str = "Bearer") -> tuple[int, str]:
    if scheme == "Basic" and token:
        token = base64.b64encode(f"browser:{token}".encode()).decode()
    request = urllib.request.Request(url + path, headers={"Authorization": f"{scheme} {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def mqtt_connect(host: str, port: int, *, ca_file: str | None, user: str | None = None, password: str | None = None) -> str:
    outcome: dict[str, object] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, reason, p: outcome.setdefault("reason", str(reason))
    client.on_disconnect = lambda c, u, f, reason, p: outcome.setdefault("closed", str(reason))
    if ca_file:
        client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    if user:
        client.username_pw_set(user, password)
    try:
        client.connect(host, port, keepalive=10)
        deadline = time.monotonic() + 3
        while not outcome and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except (OSError, ssl.SSLError) as exc:
        return f"connect failed: {type(exc).__name__}"
    finally:
        client.disconnect()
    return str(outcome.get("reason") or f"no CONNACK ({outcome.get('closed', 'nothing')})")


def main() -> None:
    url, token, host, port, ca_file, user, password_file = sys.argv[1:8]
    password = open(password_file).read().strip()
    right = rest(url, token)
    print(json.dumps({
        "rest_without_token": rest(url, None)[0],
        "rest_wrong_token": rest(url, token[::-1])[0],
        "rest_right_token": right[0],
        "clients": [c["endpoint"] for c in json.loads(right[1])] if right[0] == 200 else [],
        # the fleet page: a browser gives the token as a basic password
        "page_without_token": rest(url.removesuffix("/api"), None, path="/fleet")[0],
        "page_basic_token": rest(url.removesuffix("/api"), token, path="/fleet", scheme="Basic")[0],
        "mqtt_anonymous_tls": mqtt_connect(host, int(port), ca_file=ca_file),
        "mqtt_plain_tcp": mqtt_connect(host, int(port), ca_file=None, user=user, password=password),
        "mqtt_user": mqtt_connect(host, int(port), ca_file=ca_file, user=user, password=password),
    }))


if __name__ == "__main__":
    main()
