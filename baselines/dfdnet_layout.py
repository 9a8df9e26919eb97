"""The layout of DFDNet's released component dictionaries, shared by the method (which files it needs)
and the network (the order it reads them in); imports nothing, so listing the method loads no torch."""

#: one dictionary file per (part, feature size); the network reads them in this order
PARTS = ("left_eye", "right_eye", "nose", "mouth")
FEATURE_SIZES = (256, 128, 64, 32)
