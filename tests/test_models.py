"""The three models match the seed paper's tables exactly; the distillation teacher is the size its docs say."""

import pytest

from edge_runtime.core.errors import FerError
from train.models import MODEL_BUILDERS, build_model
from train.paper import MODEL_NAMES, PAPER_PARAMETER_COUNTS


@pytest.mark.parametrize("name, expected", [("cnn", 117_031), ("cnn_lstm_small", 303_495), ("cnn_lstm", 457_863)])
def test_parameter_counts_match_paper(name, expected):
    model = build_model(name)
    assert model.count_params() == expected == PAPER_PARAMETER_COUNTS[name]
    assert model.get_layer("rescale").count_params() == 0
    assert tuple(model.input_shape) == (None, 48, 48, 1)
    assert tuple(model.output_shape) == (None, 7)


def test_the_teacher_is_a_larger_model_with_the_same_input_contract():
    model = build_model("teacher_vgg")
    assert model.count_params() == 4_693_575
    assert model.get_layer("rescale").count_params() == 0
    assert tuple(model.input_shape) == (None, 48, 48, 1) and tuple(model.output_shape) == (None, 7)


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_models_take_raw_pixels(name):
    import numpy as np

    model = build_model(name)
    probabilities = model(np.full((2, 48, 48, 1), 255.0, np.float32), training=False).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_lstms_are_unrolled_for_tflite():
    model = build_model("cnn_lstm")
    assert all(model.get_layer(name).unroll for name in ("lstm1", "lstm2"))


def test_unknown_model():
    with pytest.raises(FerError, match="unknown model 'resnet'"):
        build_model("resnet")


def test_the_cli_names_are_the_builders_names():
    """The CLI validates --model against train.paper (no Keras import); the builders must use the same names."""
    assert tuple(MODEL_BUILDERS) == MODEL_NAMES


@pytest.mark.slow
def test_the_shipped_float_model_loads_with_plain_keras(tmp_path):
    """No custom layer left in the shipped float model: stock Keras opens it without importing this project."""
    import subprocess
    import sys

    from tests.conftest import SHIPPED_KERAS, require

    model = require(SHIPPED_KERAS, "shipped float model")
    script = ("import sys, keras; model = keras.saving.load_model(sys.argv[1]); "
              "ours = [m for m in sys.modules if m.split('.')[0] in ('train', 'convert', 'edge_runtime')]; "
              "print(model.count_params(), ours)")
    result = subprocess.run([sys.executable, "-c", script, str(model)], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path)},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "457863" and result.stdout.strip().endswith("[]")
