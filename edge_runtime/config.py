"""The runtime's one configuration schema: typed, documented, validated on load.

The schema is composed of the components' own sections: each component
(classifier, source, detectors, smoothing, reporting, HTTP, sinks, MQTT)
defines its section as a frozen dataclass whose fields carry their default,
allowed values and a one-line description, once; this module adds the
service's own section, loading, overrides and the checks run before start-up.
``edge-runtime check-config FILE`` validates a TOML file against it and
``edge-runtime show-config`` prints the defaults. Unknown keys are
errors (a typo must not silently fall back to a default), and every error
names the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, get_type_hints

from edge_runtime.classifier import ModelConfig
from edge_runtime.core.errors import ConfigError, FerError
from edge_runtime.core.records import Dialect, build_checked, setting
from edge_runtime.detectors import DetectorConfig
from edge_runtime.health import HttpConfig, is_loopback, parse_listen
from edge_runtime.reporting import OutputConfig
from edge_runtime.sinks import SinksConfig
from edge_runtime.sinks.mqtt import MqttOptions, TlsFiles, tls_context
from edge_runtime.smoothing import SmoothingOptions
from edge_runtime.sources import SourceConfig, is_moving

log = logging.getLogger(__name__)

# Keys that were replaced, with what replaced them: an old config gets told what to write instead.
RENAMED_KEYS = {
    "smoothing.alpha": "smoothing.time_constant_s (the average now runs on time: a time constant in seconds, "
                       "not a per-frame weight)",
    "smoothing.max_missed": "smoothing.max_missed_s (seconds without a detection, not frames)",
}
# How the config's errors speak: keys and tables (TOML), raised as ConfigError.
CONFIG = Dialect(error=ConfigError, noun="key", container="a table", renamed=RENAMED_KEYS)


@dataclass(frozen=True)
class ServiceConfig:
    notify: bool = setting(True, "talk to systemd (READY/WATCHDOG/STOPPING) when NOTIFY_SOCKET is set")
    stop_timeout_s: float = setting(5.0, "on SIGTERM, how long to wait for sinks to flush", minimum=0.0)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    output: OutputConfig = field(default_factory=OutputConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    sinks: SinksConfig = field(default_factory=SinksConfig)
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    service: ServiceConfig = field(default_factory=ServiceConfig)


def config_from_dict(raw: dict) -> Config:
    """Validate a parsed config (for example from TOML) and fill in defaults."""
    return build_checked(Config, raw, "", CONFIG)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file (refused when others than its owner may change it)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o022:  # anyone who may write it may point the service at any model, camera or broker
            raise ConfigError(f"config file {path} may be changed by group or others (mode {mode:04o}); run "
                              f"`chmod go-w {path}`")
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path} not found") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from error
    try:
        return config_from_dict(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Apply ``{"section.key": value}`` overrides (from CLI options), validated like the file."""
    raw = dataclasses.asdict(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        table = raw
        for section in sections:
            table = table[section]
        table[key] = value
    return config_from_dict(raw)


class SchemaField(NamedTuple):
    """One setting of the schema: its key path, Python type, default and metadata (doc, choices, range)."""

    path: str
    type: type
    default: Any
    doc: str
    choices: tuple | None


def schema_field(path: str) -> SchemaField:
    """The setting at ``section.key`` (what CLI options and docs are derived from)."""
    *sections, key = path.split(".")
    section_type = Config
    for section in sections:
        section_type = get_type_hints(section_type)[section]
    item = next(f for f in fields(section_type) if f.name == key)
    return SchemaField(path, get_type_hints(section_type)[key], item.default, item.metadata.get("doc", ""),
                       item.metadata.get("choices"))


def describe_schema(cls=Config, prefix: str = "") -> list[str]:
    """The schema as TOML with comments: every key, its default, its allowed values and what it does."""
    lines = []
    hints = get_type_hints(cls)
    for item in fields(cls):
        if dataclasses.is_dataclass(hints[item.name]):
            section = f"{prefix}.{item.name}" if prefix else item.name
            lines += ["", f"[{section}]"] + describe_schema(hints[item.name], section)
            continue
        meta = item.metadata
        constraint = ""
        if meta.get("choices"):
            constraint = f" (one of: {', '.join(map(str, meta['choices']))})"
        elif meta.get("min") is not None or meta.get("max") is not None:
            constraint = f" (range: {meta.get('min', '')}..{meta.get('max') if meta.get('max') is not None else ''})"
        default = item.default
        rendered = default
        if isinstance(default, str):
            rendered = f'"{default}"'
        elif isinstance(default, bool):
            rendered = str(default).lower()
        lines += [f"# {meta.get('doc', '')}{constraint}", f"{item.name} = {rendered}"]
    return lines


def _writable_file(path_text: str, key: str) -> None:
    """Refuse a file path the service could not create or append to (a file as a folder, /proc, read-only...)."""
    import tempfile

    target = Path(path_text).expanduser()
    if target.is_dir():
        raise ConfigError(f"{key}: {path_text!r} is a folder; give a file path")
    parent = target.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{key}: {path_text!r} lies under {str(existing)!r}, which is a file, not a folder")
    if not parent.exists():
        return  # created at start-up (the parent chain is checked above)
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".fer-edge-write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"{key}: cannot write {path_text!r}: {str(parent)!r} is not writable ({error.strerror}); "
                          "choose a writable folder, e.g. /var/lib/fer-edge under the service") from error


def check_private_file(path_text: str, key: str, holds: str = "the password") -> None:
    """Refuse a secret file (password, private key) that is missing or that group or others may read.

    The value is never echoed while it is not an existing file: it may be the secret itself, pasted by mistake.
    """
    import stat

    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"{key}: no file at the path given (the value is not shown: it may be a secret pasted by "
                          f"mistake); give the path of a file that holds {holds}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{key}: {path_text} may be read by group or others (mode {mode:04o}); "
                          f"run `chmod 600 {path_text}` (and own it by the service's user)")


def read_secret(path_text: str, key: str, holds: str = "the password") -> str:
    """The secret in a private file (checked by :func:`check_private_file`), without its trailing newline."""
    check_private_file(path_text, key, holds)
    with open(path_text, "rb") as handle:  # bounded: a secret is one short line, whatever the file holds
        secret = handle.read(4097).decode(errors="replace").strip()
    if not secret or len(secret) > 4096 or "\n" in secret:
        raise ConfigError(f"{key}: {path_text} must hold {holds} on one line (it is empty, longer than 4096 "
                          "characters, or has several lines)")
    return secret


def mqtt_password(mqtt: MqttOptions, environ=None) -> str:
    """The broker password: from mqtt.password_file, else from the variable mqtt.password_env names, else none."""
    import os

    if mqtt.password_file:
        return read_secret(mqtt.password_file, "mqtt.password_file")
    if mqtt.password_env:
        value = (os.environ if environ is None else environ).get(mqtt.password_env)
        if not value:
            raise ConfigError(f"mqtt.password_env: the environment variable {mqtt.password_env!r} is not set or empty; "
                              "set it for the service (systemd: EnvironmentFile= with a 0600 file)")
        return value
    return ""


def _check_http(http: HttpConfig) -> None:
    host, _ = parse_listen(http.listen)
    if http.auth_file:
        read_secret(http.auth_file, "http.auth_file", "USER:PASSWORD")
    elif not is_loopback(host) and not http.allow_unauthenticated:
        what = "the metrics and the live camera view" if http.preview else "the metrics"
        raise ConfigError(f"http.listen: {http.listen!r} is reachable from other machines and http.auth_file is not "
                          f"set, so anyone on the network would see {what}; set http.auth_file (a 0600 file holding "
                          "USER:PASSWORD), listen on 127.0.0.1, or set http.allow_unauthenticated = true")
    if bool(http.tls_cert_file) != bool(http.tls_key_file):
        raise ConfigError("http.tls_cert_file and http.tls_key_file go together: give both (PEM certificate and key) "
                          "or neither")
    if http.tls_cert_file:
        check_private_file(http.tls_key_file, "http.tls_key_file", "the certificate's private key")
        server_tls_context(http)


def server_tls_context(http: HttpConfig):
    """The HTTPS server's SSL context; a :class:`ConfigError` naming the key of a file that cannot be used."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(http.tls_cert_file, http.tls_key_file)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"http.tls_cert_file: cannot load {http.tls_cert_file!r} with key {http.tls_key_file!r}: "
                          f"{getattr(error, 'strerror', None) or error}; give PEM files whose key matches the "
                          "certificate") from error
    return context


def mqtt_tls_files(mqtt: MqttOptions) -> TlsFiles | None:
    """The TLS files of the MQTT connection, or ``None`` without mqtt.tls."""
    if not mqtt.tls:
        return None
    return TlsFiles(mqtt.tls_ca_file, mqtt.tls_cert_file, mqtt.tls_key_file, mqtt.tls_verify)


def _check_mqtt(mqtt: MqttOptions) -> None:
    if mqtt.spool_file:
        _writable_file(mqtt.spool_file, "mqtt.spool_file")
    mqtt_password(mqtt)
    files = mqtt_tls_files(mqtt)
    if files is None:
        if mqtt.tls_ca_file or mqtt.tls_cert_file or mqtt.tls_key_file:
            raise ConfigError("mqtt.tls_ca_file/tls_cert_file/tls_key_file are set but mqtt.tls is false: set "
                              "mqtt.tls = true (and the broker's TLS port, usually 8883)")
        return
    if files.key_file:
        check_private_file(files.key_file, "mqtt.tls_key_file", "the client certificate's private key")
    tls_context(files)


def preflight(config: Config, *, load_model: bool = True) -> None:
    """Everything ``run`` would refuse before its first frame, checked without starting anything.

    ``edge-runtime check-config`` and ``edge-runtime run`` both call this, so a
    config that passes the check is one the service accepts: listen address,
    writable output paths, files the sinks, detector and model need.
    ``load_model=False`` skips loading the model file itself: ``run`` loads it
    moments later, and refuses a damaged file there with the same error.
    """
    from edge_runtime.core.contract import load_contract
    from edge_runtime.core.interpreter import is_edgetpu_compiled, make_interpreter
    from edge_runtime.sources import open_source

    try:
        open_source(config.source.spec, loop=config.source.loop)  # resolves the spec; opens no device or file
    except FerError as error:
        raise ConfigError(str(error)) from error
    if config.http.listen:
        _check_http(config.http)
    elif config.http.preview:
        raise ConfigError("http.preview: the live view needs http.listen (for example 127.0.0.1:9108)")
    if config.output.annotate:
        target = Path(config.output.annotate)
        if target.suffix:  # a video file; a path without suffix is a folder for annotated stills
            _writable_file(config.output.annotate, "output.annotate")
        elif is_moving(config.source.spec):
            raise ConfigError(f"output.annotate: {config.output.annotate!r} has no suffix, so it names a folder for "
                              "stills, but the source is a camera, a stream or a video; give a video path such as "
                              "/var/lib/fer-edge/annotated/camera.mp4")
        elif target.exists() and not target.is_dir():
            raise ConfigError(f"output.annotate: {config.output.annotate!r} is a file; give a video path or a folder")
    if config.sinks.file:
        _writable_file(config.sinks.file, "sinks.file")
    if config.mqtt.host:
        _check_mqtt(config.mqtt)
    model_path = getattr(config.detector.backend, "model_path", "")
    if model_path and not Path(model_path).is_file():
        raise ConfigError(f"detector.{config.detector.name}.model_path: {model_path!r} not found")
    if config.detector.name == "yunet" and not model_path:
        raise ConfigError("detector.yunet.model_path: the yunet detector needs its ONNX file "
                          "(face_detection_yunet_2023mar.onnx from opencv_zoo)")
    try:
        load_contract(config.model.file)
        if load_model and not is_edgetpu_compiled(config.model.file):  # a compiled one loads only on an Edge TPU
            make_interpreter(config.model.file)  # a truncated, empty or zeroed file fails here, not at start-up
    except FerError as error:
        raise ConfigError(f"model.path: {error}") from error
    spec = config.source.spec
    camera = f"/dev/video{spec}" if spec.isdigit() else spec if spec.startswith("/dev/video") else None
    if camera is not None and not Path(camera).exists():  # it may be plugged in later: a warning, not a refusal
        log.warning("source.spec: camera %s is not there now; run will wait for it (source.camera_retries)", camera)
