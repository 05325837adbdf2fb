"""The seed paper's three models by name, with their published parameter counts, and the larger teacher trained for
distillation beside them (not in the paper); no Keras needed to read them."""

from typing import Final

MODEL_NAMES: Final[tuple[str, ...]] = ("cnn", "cnn_lstm_small", "cnn_lstm", "teacher_vgg")
PAPER_NAMES: Final[dict[str, str]] = {"cnn": "Model 1 (CNN)", "cnn_lstm_small": "Model 2 (CNN+LSTM small)",
                                      "cnn_lstm": "Model 3 (CNN+LSTM)",
                                      "teacher_vgg": "Teacher (VGG-style CNN, not in the paper)"}
# The parameter counts printed in the seed paper's Tables 2, 3 and 4.
PAPER_PARAMETER_COUNTS: Final[dict[str, int]] = {"cnn": 117_031, "cnn_lstm_small": 303_495, "cnn_lstm": 457_863}
