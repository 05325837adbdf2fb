"""Home Assistant MQTT discovery: the runtime appears in Home Assistant by itself, as one device with sensors.

:class:`HomeAssistantPublisher` is the MQTT sink's companion (the service wires it in): on connecting, the sink
publishes (retained) one discovery config per sensor under
``<prefix>/sensor/<node_id>/<object_id>/config``: the dominant emotion, the number of faces in view, and the share of
each label. The sensors read one retained JSON state topic, fed by the ``changes`` and ``summary`` output modes
(``frames`` mode sends too many messages for a home-automation system and feeds no state). An availability topic says
``online`` once connected, and ``offline`` while the camera delivers no frames (it is being reopened); the broker
publishes the MQTT last will ``offline`` when the runtime vanishes, and the runtime publishes it itself on a clean
stop.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from edge_runtime.core.faces import FaceChange, Summary, shares_of
from edge_runtime.core.labels import LABELS
from edge_runtime.core.publication import Publication

AVAILABLE, NOT_AVAILABLE = "online", "offline"


@dataclass
class Discovery:
    """Where the device's topics are, and the messages that announce it."""

    node_id: str = "fer_edge"
    prefix: str = "homeassistant"
    version: str = ""

    @property
    def base(self) -> str:
        return f"fer-edge/{self.node_id}"

    @property
    def availability_topic(self) -> str:
        return f"{self.base}/availability"

    @property
    def state_topic(self) -> str:
        return f"{self.base}/state"

    def device(self) -> dict:
        return {"identifiers": [f"fer_edge_{self.node_id}"], "name": f"fer-edge {self.node_id}",
                "manufacturer": "fer-edge", "model": "CNN+LSTM facial expression recognition (FER2013)",
                "sw_version": self.version}

    def configs(self) -> list[tuple[str, dict]]:
        """``(topic, payload)`` of every sensor's retained discovery config."""
        common = {"state_topic": self.state_topic, "availability_topic": self.availability_topic,
                  "payload_available": AVAILABLE, "payload_not_available": NOT_AVAILABLE, "device": self.device()}
        sensors = [("emotion", {"name": "Emotion", "value_template": "{{ value_json.emotion }}",
                                "icon": "mdi:emoticon-outline"}),
                   ("faces", {"name": "Faces", "value_template": "{{ value_json.faces }}", "state_class": "measurement",
                              "icon": "mdi:account-multiple"})]
        sensors += [(f"share_{label}", {"name": f"{label.capitalize()} share", "unit_of_measurement": "%",
                                        "state_class": "measurement", "icon": "mdi:percent",
                                        "value_template": share_template(label)})
                    for label in LABELS]
        return [(f"{self.prefix}/sensor/{self.node_id}/{object_id}/config",
                 {**sensor, "unique_id": f"fer_edge_{self.node_id}_{object_id}",
                  "object_id": f"fer_edge_{self.node_id}_{object_id}", **common})
                for object_id, sensor in sensors]


def share_template(label: str) -> str:
    """The Jinja template that reads one label's share of the time, in percent, from the state payload."""
    return f"{{{{ (value_json.shares.{label} | float(0) * 100) | round(1) }}}}"


@dataclass
class StateTracker:
    """The sensors' state from the change and summary records: who is in view, and what they show."""

    present: dict[int, str] = field(default_factory=dict)  # track -> current label (changes mode)

    def update(self, record) -> dict | None:
        """The new state JSON for a record that changes it, else None."""
        if isinstance(record, Summary):
            shares = record.label_shares
            emotion = max(shares, key=shares.get) if shares else "none"
            return {"emotion": emotion, "faces": record.faces, "shares": shares, "ts": record.end_ts}
        if isinstance(record, FaceChange):
            if record.type == "left":
                self.present.pop(record.track, None)
            else:
                self.present[record.track] = record.label
            counts = Counter(self.present.values())
            emotion = counts.most_common(1)[0][0] if counts else "none"
            return {"emotion": emotion, "faces": len(self.present), "shares": shares_of(counts), "ts": record.ts}
        return None


def state_payload(state: dict) -> str:
    """The state as the compact JSON the sensors' templates read."""
    return json.dumps(state, separators=(",", ":"))


class HomeAssistantPublisher:
    """What Home Assistant needs on the MQTT connection: discovery and availability on connecting, the sensors'
    state after the records that change it, ``offline`` at a clean stop and as the last will (a
    :class:`edge_runtime.sinks.mqtt.Companion`)."""

    def __init__(self, discovery: Discovery):
        self.discovery = discovery
        self._state = StateTracker()
        self._delivering = True  # the camera delivers frames: the sensors are available

    def _availability(self) -> Publication:
        return Publication(self.discovery.availability_topic, AVAILABLE if self._delivering else NOT_AVAILABLE, True)

    def last_will(self) -> Publication:
        """What the broker publishes if the connection drops without a clean stop: the entity goes unavailable."""
        return Publication(self.discovery.availability_topic, NOT_AVAILABLE, True)

    def on_connect(self) -> list[Publication]:
        """On every (re)connection: available, and the discovery configs (retained, so they survive a broker
        restart)."""
        return [self._availability()] + [
            Publication(topic, json.dumps(payload), True) for topic, payload in self.discovery.configs()]

    def on_record(self, record) -> list[Publication]:
        """The new state after a record, when the state changed; nothing otherwise."""
        state = self._state.update(record)
        # retained, so a restarted Home Assistant sees the state at once
        return [] if state is None else [Publication(self.discovery.state_topic, state_payload(state), True)]

    def on_source(self, delivering: bool) -> list[Publication]:
        """The sensors are unavailable while the camera delivers no frames (it is being reopened), and available
        again with its next frame."""
        if delivering == self._delivering:
            return []
        self._delivering = delivering
        return [self._availability()]

    def on_clean_stop(self) -> list[Publication]:
        """On a clean stop: the entity goes unavailable."""
        return [Publication(self.discovery.availability_topic, NOT_AVAILABLE, True)]
