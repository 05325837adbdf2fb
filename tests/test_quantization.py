"""Quantization-aware training: the int8-simulating Keras model, its fine-tuning, and its conversion."""

import json

import numpy as np
import pytest

from convert.inspect_tflite import float_ops, io_types
from convert.pipeline import ConvertOptions, run_conversion
from convert.quantize import convert
from edge_runtime.core.errors import FerError
from lab.quantization import FakeQuant, is_quantization_aware, quantization_aware_model


def small_float_model():
    """The paper's layer kinds in miniature: rescale, conv+BN+ReLU, pool, LSTM, dense."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1), name="pixels")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = layers.Conv2D(4, 3, padding="same", name="c1_conv")(x)
    x = layers.BatchNormalization(name="c1_bn")(x)
    x = layers.ReLU(name="c1_relu")(x)
    x = layers.MaxPooling2D(4, name="pool")(x)
    x = layers.Reshape((12, 48), name="to_sequence")(x)
    x = layers.LSTM(8, unroll=True, name="lstm1")(x)
    x = layers.Dense(16, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(7, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="small")
    # Non-trivial batch statistics, so that folding them into the convolution is exercised.
    model.get_layer("c1_bn").set_weights([np.full(4, 1.5, np.float32), np.full(4, 0.1, np.float32),
                                          np.full(4, 0.2, np.float32), np.full(4, 0.5, np.float32)])
    return model


@pytest.fixture(scope="module")
def real_faces(fer_small):
    """Real Training images to calibrate on, real PrivateTest images to compare on."""
    return fer_small.split("Training").images[:140], fer_small.split("PrivateTest")


@pytest.fixture(scope="module")
def quantization_aware(real_faces, tmp_path_factory):
    float_model = small_float_model()
    folder = tmp_path_factory.mktemp("qat")
    float_model.save(folder / "small.keras")
    model = quantization_aware_model(float_model, real_faces[0])
    model.save(folder / "small_qat.keras")
    return float_model, model, folder


def _batch_one(model):
    import keras

    inputs = keras.Input(batch_shape=(1, 48, 48, 1))
    return keras.Model(inputs, model(inputs))


@pytest.mark.slow
def test_the_int8_model_computes_what_the_quantization_aware_model_computes(quantization_aware, real_faces):
    from ai_edge_litert.interpreter import Interpreter

    float_model, model, _ = quantization_aware
    images = real_faces[1].images[:120]
    content = convert(_batch_one(model), "int8", quantization_aware=True)
    assert io_types(content) == {"input": "uint8", "output": "uint8"} and float_ops(content) == []
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    input_detail, output_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert input_detail["quantization"] == (1.0, 0)  # raw pixels map directly
    scale, zero_point = output_detail["quantization"]
    int8 = []
    for image in images:
        interpreter.set_tensor(input_detail["index"], image[None, ..., None])
        interpreter.invoke()
        int8.append((interpreter.get_tensor(output_detail["index"])[0].astype(np.float32) - zero_point) * scale)
    int8 = np.stack(int8)
    simulated = np.asarray(model.predict(images[..., None].astype(np.float32), verbose=0))
    reference = np.asarray(float_model.predict(images[..., None].astype(np.float32), verbose=0))
    # The simulation is within a step or two of the integer arithmetic; the float model is much further off.
    simulation_error = np.abs(simulated - int8).mean()
    assert simulation_error < 2 / 256
    assert simulation_error < np.abs(reference - int8).mean() / 2
    assert (simulated.argmax(1) == int8.argmax(1)).mean() >= 0.95


@pytest.mark.slow
def test_the_quantization_aware_model_is_the_float_model_plus_rounding(quantization_aware, real_faces):
    float_model, model, folder = quantization_aware
    assert is_quantization_aware(model) and not is_quantization_aware(float_model)
    fake_quants = [layer for layer in model.layers if isinstance(layer, FakeQuant)]
    # Input, rescale, ReLU; 4 gate projections; at t=0 the i, g, o gates, i*g, tanh(c), h (the forget gate has no
    # cell to act on yet); at each of the 11 later steps all 4 gates, 4 recurrent products, 4 sums, i*g, f*c, c,
    # tanh(c), h; then fc, logits, softmax.
    assert len(fake_quants) == 3 + 4 + 6 + 11 * 17 + 3
    # The same weights: batch normalization folded away (4 statistics per channel), the LSTM's weights shared by all
    # its steps as in the LSTM itself (one recurrent layer per gate, not one per step).
    assert model.count_params() == float_model.count_params() - 4 * 4
    names = {layer.name for layer in fake_quants}
    assert {"fq_input", "fq_c1_relu", "fq_lstm1_t0_i", "fq_lstm1_t11_h", "fq_probs_logits", "fq_probs"} <= names
    assert model.get_layer("fq_input").scale == 1.0 and model.get_layer("fq_probs").scale == pytest.approx(1 / 256)
    images = real_faces[1].images[:60, ..., None].astype(np.float32)
    simulated = np.asarray(model.predict(images, verbose=0))
    reference = np.asarray(float_model.predict(images, verbose=0))
    assert np.abs(simulated - reference).max() < 0.25  # rounding noise, not a different model
    assert not np.allclose(simulated, reference)
    from lab.keras_io import load_keras_model

    reloaded = load_keras_model(folder / "small_qat.keras")
    np.testing.assert_allclose(np.asarray(reloaded.predict(images, verbose=0)), simulated, atol=1e-6)


@pytest.mark.slow
def test_cell_state_ranges_are_capped_and_nothing_else(quantization_aware, real_faces):
    float_model, _, _ = quantization_aware

    def ranges(cell_range):
        model = quantization_aware_model(float_model, real_faces[0], cell_range=cell_range)
        return {layer.name: (layer.low, layer.high) for layer in model.layers if isinstance(layer, FakeQuant)}

    plain, capped = ranges(0.0), ranges(0.05)
    assert plain.keys() == capped.keys()
    cell_states = {name for name in plain if name.endswith(("_c", "_fc")) and "_t" in name}
    assert len(cell_states) == 2 * 11  # f*c and c at each step after the first
    for name in cell_states:
        assert capped[name] == (max(plain[name][0], -0.05), min(plain[name][1], 0.05))
    assert any(capped[name] != plain[name] for name in cell_states)
    assert all(capped[name] == plain[name] for name in plain.keys() - cell_states)
    with pytest.raises(FerError, match="is negative"):
        quantization_aware_model(float_model, real_faces[0], cell_range=-1)


@pytest.mark.slow
def test_refuses_what_it_cannot_simulate(quantization_aware, real_faces):
    import keras
    from keras import layers

    _, model, _ = quantization_aware
    with pytest.raises(FerError, match="already quantization-aware"):
        quantization_aware_model(model, real_faces[0])
    inputs = keras.Input((48, 48, 1))
    odd = keras.Model(inputs, layers.Dense(7, activation="softmax")(layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(FerError, match="has no int8 simulation"):
        quantization_aware_model(odd, real_faces[0])


@pytest.mark.slow
@pytest.mark.parametrize("flip_pairs", [False, True])  # a flip-pair loss cannot score unpaired rows: the start still is
def test_fine_tuning_starts_from_the_simulated_copy_and_keeps_it_if_better(quantization_aware, fer_small, tmp_path,
                                                                          flip_pairs):
    from lab.calibration import MANIFEST_NAME, select_manifest, write_manifest
    from lab.keras_io import load_keras_model
    from train.fit import FitConfig, fit

    _, _, folder = quantization_aware
    # The copy's ranges come from the images a calibration manifest names (fer-convert's), found in the dataset.
    write_manifest(select_manifest(fer_small, per_class=5), tmp_path / "calibration" / MANIFEST_NAME)
    config = FitConfig(epochs=1, batch_size=32, learning_rate=1e-4, quantization_aware=str(folder / "small.keras"),
                       calibration_dir=str(tmp_path / "calibration"), flip_pairs=flip_pairs)
    state = fit(fer_small, tmp_path / "run", config, verbose=0)
    assert state.config.model == "small" and state.config.quantization_aware.endswith("small.keras")
    assert state.epochs_done == 1
    # The copy before fine-tuning is scored on PublicTest: its accuracy is the untuned copy's, from the manifest's
    # faces.
    from lab.calibration import manifest_images
    from lab.keras_io import predict_probabilities

    untuned = quantization_aware_model(load_keras_model(folder / "small.keras"),
                                       manifest_images(fer_small, tmp_path / "calibration" / MANIFEST_NAME))
    public = fer_small.split("PublicTest")
    untuned_probabilities = predict_probabilities(untuned, public.images)
    assert state.start_val_accuracy == pytest.approx(np.mean(untuned_probabilities.argmax(1) == public.labels))
    # best.keras is the untuned copy when fine-tuning did not beat it, else the fine-tuned epoch.
    best = load_keras_model(tmp_path / "run" / "best.keras")
    assert is_quantization_aware(best)
    best_probabilities = predict_probabilities(best, public.images)
    if state.best_epoch == 0:
        np.testing.assert_allclose(best_probabilities, untuned_probabilities, atol=1e-6)
    else:
        assert state.best_val_accuracy > state.start_val_accuracy
        assert not np.allclose(best_probabilities, untuned_probabilities)
    resumed = fit(fer_small, tmp_path / "run", FitConfig(**{**config.__dict__, "epochs": 2}), resume=True, verbose=0)
    assert resumed.epochs_done == 2 and resumed.config.model == "small"


@pytest.mark.slow
def test_fer_convert_on_a_quantization_aware_model(quantization_aware, fer_root, tmp_path):
    _, _, folder = quantization_aware
    options = ConvertOptions(out_dir=tmp_path / "models", report_dir=tmp_path / "reports", limit=140,
                             calibration_dir=tmp_path / "calibration", max_drop_pp=100, min_agreement=0.0,
                             edgetpu=True, reference_model=folder / "small.keras", name="shipped")
    report = run_conversion(folder / "small_qat.keras", options, str(fer_root))
    assert report.quantization_aware is True
    assert report.calibration is None and report.quantization_debugger == ()  # the ranges are in the model
    assert not (tmp_path / "calibration").exists()
    assert report.models["int8"].float_ops == 0 and report.edgetpu.static_check.compatible
    comparison = report.verification.comparisons["int8"]
    reference = report.verification.reference
    assert comparison.top1_agreement > reference.comparisons["int8"].top1_agreement - 0.02
    assert set(reference.comparisons) == {"keras", "float32", "int8"}
    markdown = (tmp_path / "reports" / "shipped_int8.md").read_text()  # --name sets the files' stem
    assert "quantization-aware" in markdown and "Against the float model `small.keras`" in markdown
    sidecar = json.loads((tmp_path / "models" / "shipped_int8.json").read_text())
    assert sidecar["verified"]["float_reference"]["file"] == "small.keras"
    assert sidecar["source_model"] == "small_qat.keras"
    with pytest.raises(FerError, match="converts to int8"):
        run_conversion(folder / "small_qat.keras", ConvertOptions(quantize="dynamic", verify=False,
                                                                 out_dir=tmp_path / "m2"), None)
