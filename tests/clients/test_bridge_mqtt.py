"""``bridge mqtt`` against a real Mosquitto broker, read back with a real paho client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from instrumentd.clients.bridge_mqtt import Settings, discovery_configs, instrument_state, parse_broker
from instrumentd.pipeline.errors import ParameterError

from ..conftest import free_port
from .conftest import wait_for

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto not installed (make system-deps)")


class Broker:
    """``mosquitto -p PORT`` on loopback; :meth:`restart` keeps the port (and, without persistence, loses retained messages)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        probe = Reader(self.port, "probe/#")
        probe.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Reader:
    """A paho client subscribed to ``topics``, keeping every message as ``(topic, payload, retain)``."""

    def __init__(self, port: int, *topics: str, timeout: float = 15.0):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self._keep(m)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        deadline = time.monotonic() + timeout
        while True:  # the broker may still be starting
            try:
                self.client.connect("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.client.loop_start()
        assert self.subscribed.wait(timeout), "the broker did not confirm the subscription"

    def _keep(self, m) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload, bool(m.retain)))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def json(self, topic: str) -> list[dict]:
        return [json.loads(p) for p, _ in self.on(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.kill()


def _bridge(tmp_path, *args: str) -> subprocess.Popen:
    err = open(tmp_path / f"bridge-{free_port()}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "instrumentd", "bridge", "mqtt", *args],
                            stdout=subprocess.DEVNULL, stderr=err)


def test_settings_check_their_input(tmp_path, monkeypatch):
    assert parse_broker("mqtt://broker.lan") == ("broker.lan", 1883, False)
    assert parse_broker("mqtts://10.0.0.2:8884") == ("10.0.0.2", 8884, True)
    for bad in ("tcp://h:1", "mqtt://", "mqtt://h:99999", "h:1883"):
        with pytest.raises(ParameterError, match="--broker"):
            parse_broker(bad)
    with pytest.raises(ParameterError, match="mqtts://"):
        Settings(ca_file=__file__)
    with pytest.raises(ParameterError, match="--prefix"):
        Settings(prefix="a/#")
    monkeypatch.setenv("INSTRUMENTD_MQTT_USERNAME", "house")
    monkeypatch.setenv("INSTRUMENTD_MQTT_PASSWORD", "secret")
    s = Settings()
    assert (s.username, s.password) == ("house", "secret")


def test_discovery_and_state_payloads(publishing):
    configs = discovery_configs("radio", "instrumentd", "homeassistant")
    assert sorted(configs) == [f"homeassistant/sensor/instrumentd_radio/{k}/config"
                               for k in ("confidence", "instrument", "level", "state")]
    for key, c in ((k.split("/")[3], c) for k, c in configs.items()):
        assert c["unique_id"] == f"instrumentd_radio_{key}"
        assert c["availability_topic"] == "instrumentd/status" and c["device"]["identifiers"] == ["instrumentd_radio"]
    assert configs["homeassistant/sensor/instrumentd_radio/state/config"]["state_topic"] == "instrumentd/radio/source"
    state = instrument_state(publishing.window("radio", "vio", 0.97, labels=("vio", "pia"), level_db=-18.5, send=False))
    assert state["names"] == "Violin, Piano" and state["confidence"] == 0.97 and state["level_db"] == -18.5
    assert instrument_state(publishing.window("radio", "cla", 0.3, level_db=None, send=False))["names"] == "none"


@pytest.mark.slow
def test_events_retained_state_discovery_and_clean_stop(tmp_path, broker, publishing):
    bridge = _bridge(tmp_path, "--connect", publishing.pub, "--broker", broker.url, "--ha-discovery")
    live = Reader(broker.port, "instrumentd/#", "homeassistant/#")
    try:
        publishing.wait_subscribers()
        wait_for(lambda: live.on("instrumentd/status"), 30, "the bridge's online message")
        publishing.status({"radio": "running"})
        publishing.window("radio", "flu", 0.8)
        publishing.segment("radio", "vio", "start")
        publishing.window("radio", "vio", 0.97, labels=("vio",), level_db=-12.5)
        wait_for(lambda: len(live.on("instrumentd/radio/instrument")) == 2, 10, "two instrument states")
        windows = live.json("instrumentd/radio/window")
        assert [w["seq"] for w in windows] == [0, 2] and windows[1]["probabilities"]["vio"] == 0.97
        assert live.json("instrumentd/radio/segment")[0]["instrument"] == "vio"
        publishing.status({"radio": "ended"})
        wait_for(lambda: len(live.on("instrumentd/radio/source")) == 2, 10, "the source state to change")

        late = Reader(broker.port, "instrumentd/#", "homeassistant/#")  # a newcomer gets the retained state
        wait_for(lambda: len(late.messages) >= 7, 10, "the retained messages")
        time.sleep(0.3)
        retained = {t: json.loads(p) if p[:1] == b"{" else p for t, p, r in late.messages if r}
        late.close()
        assert retained["instrumentd/status"] == b"online"
        assert retained["instrumentd/radio/instrument"] == {
            "labels": ["vio"], "names": "Violin", "top": "vio", "confidence": 0.97, "level_db": -12.5,
            "wall_time": windows[1]["wall_time"]}
        assert retained["instrumentd/radio/source"]["state"] == "ended"
        assert "instrumentd/radio/window" not in retained and "instrumentd/radio/segment" not in retained
        configs = {t: c for t, c in retained.items() if t.startswith("homeassistant/")}
        assert configs == discovery_configs("radio", "instrumentd", "homeassistant")

        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(20) == 0
        assert live.on("instrumentd/status")[-1][0] == b"offline"
    finally:
        bridge.kill()
        live.close()


@pytest.mark.slow
def test_last_will_on_kill_and_own_topic_prefix(tmp_path, broker, publishing):
    bridge = _bridge(tmp_path, "--connect", publishing.pub, "--broker", broker.url, "--prefix", "house/music")
    live = Reader(broker.port, "house/#")
    try:
        publishing.wait_subscribers()
        wait_for(lambda: live.on("house/music/status"), 30, "the bridge's online message")
        publishing.window("hall", "pia", 0.9, labels=("pia",))
        wait_for(lambda: live.on("house/music/hall/instrument"), 10, "the hall's state")
        bridge.kill()  # kill -9: no goodbye, the broker sends the last will
        wait_for(lambda: live.on("house/music/status")[-1][0] == b"offline", 10, "the last will")
    finally:
        bridge.kill()
        live.close()


@pytest.mark.slow
def test_gap_filled_from_replay_and_state_back_after_a_broker_restart(tmp_path, broker, publishing):
    bridge = _bridge(tmp_path, "--connect", publishing.pub, "--replay", publishing.replay, "--broker", broker.url)
    live = Reader(broker.port, "instrumentd/#")
    try:
        publishing.wait_subscribers()
        wait_for(lambda: live.on("instrumentd/status"), 30, "the bridge's online message")
        publishing.window("radio", "flu", 0.8, labels=("flu",))
        publishing.segment("radio", "flu", "end", send=False)  # logged, never received live
        publishing.segment("radio", "tru", "start", send=False)
        publishing.window("radio", "tru", 0.9, labels=("tru",))
        wait_for(lambda: len(live.on("instrumentd/radio/window")) == 2, 10, "both windows")
        assert [(s["seq"], s["state"]) for s in live.json("instrumentd/radio/segment")] == [(1, "end"), (2, "start")]
        live.close()

        broker.kill()  # a broker without persistence forgets the retained messages
        broker.start()
        again = Reader(broker.port, "instrumentd/#")
        wait_for(lambda: again.json("instrumentd/radio/instrument"), 30, "the state sent again on reconnection")
        assert again.json("instrumentd/radio/instrument")[-1]["labels"] == ["tru"]
        assert again.on("instrumentd/status")[-1][0] == b"online"
        again.close()
    finally:
        bridge.kill()


@pytest.mark.slow
def test_settings_from_a_config_file(tmp_path, broker, publishing):
    config = tmp_path / "bridge.toml"
    config.write_text(f'[bridge.mqtt]\nconnect = ["{publishing.pub}"]\nbroker = "{broker.url}"\nprefix = "fromtoml"\n')
    bridge = _bridge(tmp_path, "--config", str(config))
    live = Reader(broker.port, "fromtoml/#")
    try:
        publishing.wait_subscribers()
        wait_for(lambda: live.on("fromtoml/status"), 30, "the bridge configured from TOML")
    finally:
        bridge.kill()
        live.close()


def _tls_files(tmp_path) -> dict:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, made with openssl."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    for name, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", *extra)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-copy_extensions", "copy", "-out", f"{name}.crt")
    return {name: str(tmp_path / name) for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
                    reason="openssl or mosquitto_passwd not installed")
def test_tls_with_a_client_certificate_and_a_password(tmp_path, publishing):
    files = _tls_files(tmp_path)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwords"), "house", "s3cret"], check=True,
                   capture_output=True, timeout=30)
    port, plain = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    stay = "user root\n" if os.geteuid() == 0 else ""  # as root it would become `mosquitto`, who cannot read tmp_path
    conf.write_text(f"{stay}per_listener_settings true\n"
                    f"listener {port} 127.0.0.1\ncafile {files['ca.crt']}\ncertfile {files['server.crt']}\n"
                    f"keyfile {files['server.key']}\nrequire_certificate true\nallow_anonymous false\n"
                    f"password_file {tmp_path / 'passwords'}\n"
                    f"listener {plain} 127.0.0.1\nallow_anonymous true\n")  # the same broker, read back in the clear
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live = Reader(plain, "instrumentd/#")
    bridge = subprocess.Popen(
        [sys.executable, "-m", "instrumentd", "bridge", "mqtt", "--connect", publishing.pub,
         "--broker", f"mqtts://127.0.0.1:{port}", "--ca-file", files["ca.crt"], "--cert", files["client.crt"],
         "--key", files["client.key"], "--username", "house"],
        env={**os.environ, "INSTRUMENTD_MQTT_PASSWORD": "s3cret"}, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "bridge.log", "wb"))
    try:
        publishing.wait_subscribers()
        wait_for(lambda: live.on("instrumentd/status"), 30, "the bridge online over TLS")
        publishing.window("radio", "sax", 0.9, labels=("sax",))
        wait_for(lambda: live.json("instrumentd/radio/instrument"), 10, "the state over TLS")
        assert live.json("instrumentd/radio/instrument")[0]["names"] == "Saxophone"
        bridge.kill()
        wrong = tmp_path / "wrong.log"
        bridge = subprocess.Popen(
            [sys.executable, "-m", "instrumentd", "bridge", "mqtt", "--connect", publishing.pub,
             "--broker", f"mqtts://127.0.0.1:{port}", "--ca-file", files["ca.crt"], "--cert", files["client.crt"],
             "--key", files["client.key"], "--username", "house", "--password", "wrong"],
            stdout=subprocess.DEVNULL, stderr=open(wrong, "wb"))
        wait_for(lambda: "refused the connection" in wrong.read_text(), 30, "the broker's refusal, logged")
        assert "Traceback" not in wrong.read_text()
    finally:
        bridge.kill()
        live.close()
        broker.kill()
        broker.wait()
