"""Feature, output and split names of the defect-images examples (no TensorFlow)."""

IMAGE = "image"  # bytes: the encoded file (JPEG, PNG or BMP), never decoded pixels
LABEL = "label"  # int64: index of the image's class in data.classes
CLASS_NAME = "class_name"  # bytes: the image's class (a slicing feature)
IS_DEFECT = "is_defect"  # int64: 0 = a good-part class (data.good_classes), 1 = a defect
SOURCE = "source_file"  # bytes: path relative to the data folder
# Pascal VOC boxes of the image's own class, as fractions of the image size:
# [xmin, ymin, xmax, ymax] per box, flattened (absent when the image has none).
BOXES = "boxes"
BOX_FRACTION = "box_fraction"  # float: share of the image covered by its boxes (0: none)
# bytes: "small" (< 5 % of the image), "medium" (< 25 %), "large", or "unannotated"
DEFECT_SIZE = "defect_size"
IMAGE_XF = "image_xf"  # transformed: the decoded image [size, size, channels] in [0, 1]

SPLITS: tuple[str, ...] = ("train", "validation", "eval")

# Served outputs of anomaly mode beside probabilities / class_ids / classes.
SCORE = "score"  # the anomaly score (the smoothed peak of the anomaly map)
THRESHOLD = "threshold"  # the decision threshold on the score
DECISION_SCORE = "decision_score"  # sigmoid((score - threshold) / scale): 0.5 = threshold
ANOMALY_CLASSES: tuple[str, str] = ("ok", "defect")  # anomaly mode's served class names
