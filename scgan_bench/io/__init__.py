"""Input: decoding to RGB uint8 and atomic writes (``image_io``), Pillow-exact resizing and face crops
(``resize``), the paper's degradations (``degradations``) and manifests with their sha256 lock
(``manifest``)."""
