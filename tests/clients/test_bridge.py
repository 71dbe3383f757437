"""Bridge settings (:mod:`instrumentd.clients.bridge`): from defaults, a TOML table and flags; bad tables named."""

from __future__ import annotations

import pytest

from instrumentd.clients.bridge import load_settings
from instrumentd.clients.bridge_mqtt import Settings as MqttSettings
from instrumentd.clients.bridge_osc import Settings as OscSettings
from instrumentd.pipeline.errors import ParameterError


def test_defaults_then_table_then_flags(tmp_path):
    config = tmp_path / "instrumentd.toml"
    config.write_text('[bridge.mqtt]\nconnect = ["tcp://10.0.0.5:5555"]\nbroker = "mqtts://broker.lan"\n'
                      'qos = 1\nha-discovery = true\n\n[bridge.osc]\nosc = "udp://10.0.0.9:7000"\n')
    mqtt = load_settings(MqttSettings, str(config), {"prefix": "studio", "qos": None}, "bridge.mqtt")
    assert mqtt.connect == ["tcp://10.0.0.5:5555"] and (mqtt.host, mqtt.port, mqtt.tls) == ("broker.lan", 8883, True)
    assert mqtt.qos == 1 and mqtt.ha_discovery is True and mqtt.prefix == "studio" and mqtt.ha_prefix == "homeassistant"
    osc = load_settings(OscSettings, str(config), {"osc": "udp://127.0.0.1:9001"}, "bridge.osc")
    assert (osc.host, osc.port, osc.prefix) == ("127.0.0.1", 9001, "/instrumentd")
    assert load_settings(OscSettings, None, {}, "bridge.osc").osc == "udp://127.0.0.1:9000"


@pytest.mark.parametrize("text,message", [
    ('[bridge.mqtt]\nqos = "1"\n', "qos must be int, got '1'"),
    ('[bridge.mqtt]\nbrokr = "mqtt://h"\n', "no setting 'brokr'"),
    ('[bridge.mqtt]\nconnect = "tcp://h:1"\n', "connect must be a list of strings"),
    ('[bridge.mqtt]\nha_discovery = 1\n', "ha_discovery must be bool"),
    ('[bridge]\nmqtt = 3\n', "[bridge.mqtt] must be a table"),
    ("[bridge.mqtt\n", "not TOML"),
])
def test_bad_tables_are_named(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ParameterError) as err:
        load_settings(MqttSettings, str(config), {}, "bridge.mqtt")
    assert message in str(err.value)
