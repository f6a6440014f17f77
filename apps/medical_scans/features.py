"""Feature and split names of the medical-scans examples (no TensorFlow)."""

IMAGE = "image"  # bytes: PNG or JPEG file bytes
LABEL = "label"  # int64: 0 = classes[0] (negative), 1 = classes[1] (positive)
SUBTYPE = "subtype"  # bytes: subtype_pattern's first group, lower-case, or "none"
PATIENT = "patient"  # bytes: the patient (group) id
SOURCE = "source_file"  # bytes: path relative to the data folder, or "<npz>:<split>[<i>]"
IMAGE_XF = "image_xf"  # transformed: the decoded image [size, size, channels] in [0, 1]

SPLITS: tuple[str, ...] = ("train", "validation", "eval")
