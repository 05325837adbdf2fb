"""fer-convert on a tiny Keras model built here, on generated FER2013-shaped data, and on the shipped model."""

import csv
import json

import numpy as np
import pytest

from convert.inspect_tflite import float_ops, io_types
from convert.pipeline import ConvertOptions, run_conversion
from convert.quantize import convert
from convert.records import ConversionReport
from edge_runtime.core.errors import DataError, FerError, ModelError
from edge_runtime.core.labels import LABELS
from lab.calibration import build_calibration, load_calibration, select_manifest
from tests.conftest import SHIPPED_INT8, SHIPPED_KERAS, run_cli


def tiny_model():
    """A 48x48x1 -> 7 model with the same layer kinds as the paper's hybrids (conv, BN, LSTM, dense)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(4)(x)
    x = layers.Reshape((12, 48))(x)
    x = layers.LSTM(8, unroll=True)(x)
    outputs = layers.Dense(7, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model().save(path)
    return path


@pytest.fixture(scope="module")
def generated_csv(tmp_path_factory):
    """A FER2013-format CSV with smooth random images: 8 per class in Training, 4 per class in each test split."""
    return write_generated_csv(tmp_path_factory.mktemp("data") / "fer2013.csv")


def write_generated_csv(path):
    """Write the generated FER2013-format CSV of :func:`generated_csv` to ``path``."""
    import cv2

    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, count in (("Training", 8), ("PublicTest", 4), ("PrivateTest", 4)):
            for label in range(7):
                for _ in range(count):
                    image = cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 1.0)
                    image[0, 0], image[-1, -1] = 0, 255  # span the full pixel range, as real faces do
                    writer.writerow([label, " ".join(map(str, image.ravel())), usage])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["none", "float16", "dynamic", "int8"])
def test_each_quantization_mode(mode, tmp_path):
    from convert.edge_graph import edge_friendly_model
    from convert.pipeline import write_tflite

    calibration = np.random.default_rng(1).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    model = tiny_model()
    content = convert(edge_friendly_model(model), mode, calibration=calibration)
    path = tmp_path / f"tiny_{mode}.tflite"
    contract = write_tflite(content, path, mode, tmp_path / "tiny.keras", "0" * 64)
    assert contract.input.shape == (1, 48, 48, 1) and contract.labels == LABELS
    if mode == "int8":
        assert io_types(path) == {"input": "uint8", "output": "uint8"}
        assert float_ops(path) == []
        # Raw pixels map directly: scale 1, zero point 0 when calibration spans 0..255.
        assert (contract.input.scale, contract.input.zero_point) == (1.0, 0)
    else:
        assert io_types(path) == {"input": "float32", "output": "float32"}
    from edge_runtime.classifier import EmotionClassifier

    classifier = EmotionClassifier.from_file(path)
    probabilities = classifier.probabilities(calibration[0])
    expected = np.asarray(model(calibration[:1, ..., None].astype(np.float32)))[0]
    assert abs(probabilities.sum() - 1) < 0.02
    assert np.abs(probabilities - expected).max() < (0.05 if mode == "int8" else 0.01)


@pytest.mark.slow
def test_pipeline_writes_models_sidecars_and_reports(tiny_keras, generated_csv, tmp_path):
    # cell_range=0: the converter's own calibration, which the per-layer debugger describes.
    options = ConvertOptions(quantize="int8", out_dir=tmp_path / "models", report_dir=tmp_path / "reports",
                             calibration_dir=tmp_path / "calibration", calibration_per_class=5, max_drop_pp=100,
                             min_agreement=0.0, edgetpu=True, cell_range=0.0)
    report = run_conversion(tiny_keras, options, str(generated_csv))
    sidecar = json.loads((tmp_path / "models" / "tiny_int8.json").read_text())
    assert sidecar["labels"] == list(LABELS) and sidecar["input"]["dtype"] == "uint8"
    assert sidecar["verified"]["split"] == "PrivateTest" and sidecar["verified"]["images"] == 28
    assert sidecar["verified"]["budget"] == {"max_drop_pp": 100, "min_agreement": 0.0, "passed": True, "failures": []}
    assert report.calibration.histogram == {label: 5 for label in LABELS}
    assert any("fewer than 100" in w for w in report.calibration.warnings)
    assert report.edgetpu.static_check.compatible is True
    assert report.quantization_debugger, "per-layer quantization error is part of an int8 report"
    verification = report.verification
    assert set(verification.results) == {"keras", "float32", "int8"}
    assert verification.comparisons["float32"].top1_agreement == 1.0
    for suffix in ("md", "json", "html"):
        assert (tmp_path / "reports" / f"tiny_int8.{suffix}").stat().st_size > 0
    # The JSON report reads back into the same typed record.
    on_disk = json.loads((tmp_path / "reports" / "tiny_int8.json").read_text())
    read_back = ConversionReport.from_json(on_disk)
    # Compared as JSON text, which is NaN-safe (the tiny model has no decisive images).
    assert json.dumps(read_back.to_json()) == json.dumps(report.to_json())
    markdown = (tmp_path / "reports" / "tiny_int8.md").read_text()
    assert "**PASSED its budget" in markdown and "Calibration: 35 images" in markdown
    assert "Post-training quantization of the float model itself" in markdown
    check_html_report(tmp_path / "reports" / "tiny_int8.html", "passed")


@pytest.mark.slow
def test_lstm_cell_states_get_the_capped_int8_range(tiny_keras, generated_csv, tmp_path):
    """With LSTMs, int8 takes min/max ranges everywhere except the cell states, which get at most +-cell_range."""
    from ai_edge_litert.interpreter import Interpreter

    def convert_with(cell_range):
        out = tmp_path / f"range_{cell_range}"
        options = ConvertOptions(out_dir=out, report_dir=out, calibration_dir=tmp_path / "calibration",
                                 calibration_per_class=5, max_drop_pp=100, min_agreement=0.0, edgetpu=True,
                                 cell_range=cell_range)
        report = run_conversion(tiny_keras, options, str(generated_csv))
        interpreter = Interpreter(model_path=str(out / "tiny_int8.tflite"))
        capped_step = 2 * 0.05 / 255  # the int8 step of the range -0.05..0.05
        capped_tensors = sum(bool(np.isclose(detail["quantization"][0], capped_step, rtol=1e-4))
                             for detail in interpreter.get_tensor_details())
        return report, capped_tensors

    capped, capped_tensors = convert_with(0.05)
    plain, plain_tensors = convert_with(0.0)
    # 11 steps after the first each store f*c and c; the tiny model's cell states exceed +-0.05 on both sides.
    assert capped_tensors >= 2 * 11 and plain_tensors == 0
    assert "capped at +-0.05" in capped.calibration.method and "capped" not in plain.calibration.method
    assert capped.quantization_debugger == () and plain.quantization_debugger  # it would describe another model
    assert capped.models["int8"].float_ops == 0 and capped.models["int8"].io == {"input": "uint8", "output": "uint8"}
    assert capped.edgetpu.static_check.compatible is True
    assert capped.verification.comparisons["float32"].top1_agreement == 1.0  # the float file is the float model's
    with pytest.raises(FerError, match="--cell-range -1 is negative"):
        ConvertOptions(cell_range=-1)


@pytest.mark.slow
def test_forced_failing_budget_exits_nonzero_with_report(tiny_keras, generated_csv, tmp_path):
    result = run_cli("-m", "convert.cli", str(tiny_keras), "--data", str(generated_csv), "--max-drop", "-100",
                     "--out", str(tmp_path / "m"), "--report-dir", str(tmp_path / "r"),
                     "--calibration-dir", str(tmp_path / "c"), "--no-debug-layers")
    assert result.returncode == 2, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: int8 accuracy drop") and "exceeds --max-drop -100 pp" in last_line
    assert "Traceback" not in result.stderr
    assert "**FAILED its budget" in (tmp_path / "r" / "tiny_int8.md").read_text()
    check_html_report(tmp_path / "r" / "tiny_int8.html", "failed")
    # The model is still written, and its sidecar carries the failure to the device, where the runtime logs it.
    budget = json.loads((tmp_path / "m" / "tiny_int8.json").read_text())["verified"]["budget"]
    assert budget["passed"] is False and budget["failures"][0].startswith("int8 accuracy drop")
    assert json.loads((tmp_path / "m" / "tiny_float32.json").read_text())["verified"]["budget"] is None


def check_html_report(path, state):
    """The HTML report is a real page: the verdict first, real tables and the charts, no Markdown left in it."""
    from html.parser import HTMLParser

    class Outline(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.verdict, self.images = [], None, []

        def handle_starttag(self, tag, attributes):
            attributes = dict(attributes)
            self.tags.append(tag)
            if attributes.get("id") == "verdict":
                self.verdict = attributes["class"]
            if tag == "img":
                self.images.append(attributes["alt"])

    text = path.read_text()
    outline = Outline()
    outline.feed(text)
    assert outline.verdict == f"verdict {state}"
    body = outline.tags[outline.tags.index("body"):]
    assert body[1:3] == ["h1", "p"]  # the title, then the verdict before anything else
    assert outline.tags.count("table") >= 3 and outline.tags.count("td") > 20
    assert outline.images == ["per-class F1 change", "confusion matrices"]
    assert "<pre>" not in text and "|---" not in text and "**" not in text


def test_input_errors(tiny_keras, tmp_path):
    options = ConvertOptions(out_dir=tmp_path, report_dir=tmp_path, calibration_dir=tmp_path / "none", verify=False)
    with pytest.raises(ModelError, match="does not exist"):
        run_conversion(tmp_path / "missing.keras", options, None)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a keras archive")
    with pytest.raises(ModelError, match="cannot load Keras model"):
        run_conversion(corrupt, options, None)
    text = tmp_path / "model.h5"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a .keras model"):
        run_conversion(text, options, None)
    with pytest.raises(DataError, match="calibration set missing or empty"):
        run_conversion(tiny_keras, options, None)
    with pytest.raises(FerError, match="verification needs the FER2013 data"):
        run_conversion(tiny_keras, ConvertOptions(out_dir=tmp_path, report_dir=tmp_path), None)


def test_calibration_set_errors(generated_csv, tmp_path):
    import cv2

    from lab.data import load_fer2013

    dataset = load_fer2013(generated_csv)
    calibration = build_calibration(dataset, tmp_path, per_class=3)
    assert calibration.histogram() == {label: 3 for label in LABELS}
    manifest = (tmp_path / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "id,label,label_name,fingerprint" and len(manifest) == 22
    # Only Training images are ever chosen.
    training_ids = set(dataset.split("Training").ids)
    assert {row.id for row in select_manifest(dataset, 3)} <= training_ids
    for file in (tmp_path / "disgust").iterdir():
        file.unlink()
    with pytest.raises(DataError, match="no images of class disgust"):
        load_calibration(tmp_path)
    cv2.imwrite(str(tmp_path / "disgust" / "big.png"), np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError, match=r"shape \(64, 64\), expected 48x48"):
        load_calibration(tmp_path)


@pytest.mark.slow
def test_shipped_int8_agrees_with_keras_on_real_private_test(fer_full):
    if not SHIPPED_KERAS.exists() or not SHIPPED_INT8.exists():
        pytest.skip("shipped models not present")
    from convert.verify import tflite_probabilities
    from lab.data import stratified_subset
    from lab.keras_io import load_keras_model, predict_probabilities

    subset = stratified_subset(fer_full.split("PrivateTest"), 300, 0)
    reference = predict_probabilities(load_keras_model(SHIPPED_KERAS), subset.images)
    quantized = tflite_probabilities(SHIPPED_INT8, subset.images)
    agreement = float((reference.argmax(1) == quantized.argmax(1)).mean())
    sidecar = json.loads(SHIPPED_INT8.with_suffix(".json").read_text())
    # The agreement on this subset must be in line with what the converter verified on the whole split.
    assert agreement >= sidecar["verified"]["top1_agreement_vs_keras"] - 0.05


def test_calibration_build_cli(generated_csv, tmp_path):
    result = run_cli("-m", "convert.cli", "calibration", "build", "--data", str(generated_csv), "--dir", str(tmp_path),
                     "--per-class", "2", "--reselect")
    assert result.returncode == 0, result.stderr[-1500:]
    assert "14 calibration images" in result.stdout
    assert len((tmp_path / "manifest.csv").read_text().splitlines()) == 15
    assert len(list((tmp_path / "happy").glob("*.png"))) == 2


@pytest.mark.slow
def test_without_the_edge_graph_the_keras_lstm_is_converted_as_is(tiny_keras, tmp_path):
    """--no-edge-graph keeps Keras' unrolled LSTM (UNPACK + per-step SPLIT), the graph the rebuild exists to avoid."""
    from convert.inspect_tflite import op_histogram

    def ops(edge_graph):
        out = tmp_path / ("edge" if edge_graph else "plain")
        options = ConvertOptions(quantize="none", out_dir=out, report_dir=out, verify=False, edge_graph=edge_graph)
        run_conversion(tiny_keras, options, None)
        return op_histogram(out / "tiny_float32.tflite")

    plain, rebuilt = ops(False), ops(True)
    assert "UNPACK" in plain and "SPLIT" in plain
    assert "UNPACK" not in rebuilt and "SPLIT" not in rebuilt and "STRIDED_SLICE" in rebuilt


def test_debugger_tensor_names_are_shortened_to_layer_names():
    from convert.verify import readable_tensor_name

    plain = "NumericVerify/cnn_lstm_edge_1/lstm1_t10_input_1/BiasAdd1:1303"
    assert readable_tensor_name(plain) == "lstm1_t10_input_1/BiasAdd1"
    fused = "NumericVerify/cnn_lstm_edge_1/c1_relu_1/Relu;cnn_lstm_edge_1/c1_bn_1/batchnorm/add_1:88"
    assert readable_tensor_name(fused) == "c1_relu_1/Relu"
    assert readable_tensor_name("pixels") == "pixels"
