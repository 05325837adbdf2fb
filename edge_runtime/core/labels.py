"""The FER2013 class order, used by every model, report and event.

The order is the one of the original Kaggle challenge (``emotion`` column 0..6).
The image-folder release names its folders in lower case; they map by name.
"""

from typing import Final

LABELS: Final[tuple[str, ...]] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES: Final[int] = len(LABELS)
LABEL_TO_INDEX: Final[dict[str, int]] = {name: index for index, name in enumerate(LABELS)}
