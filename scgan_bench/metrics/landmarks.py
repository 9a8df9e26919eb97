"""Landmark error between SR and HR (Fig. 10), and HOG+SVM face detection accuracy (Table 6).

Landmarks are detected independently on the SR image and on its HR image, each upsampled x4 to
256 px (Pillow bicubic) so the detectors see a normal-sized face, and mapped back to 64 px
coordinates. Per image: the mean over landmarks of ``|dx| + |dy|`` (l1, pixels at 64 px), and the same
divided by the HR inter-ocular distance (``-nio``), defined for both backends as the distance between
the two eye centres. Backends:
* ``retinaface``: RetinaFace (biubug6 mobilenet0.25 weights) 5 points, the highest-scoring face
  above confidence 0.5; its points 0 and 1 are the eye centres;
* ``dlib68`` (offline): dlib's 68-point shape predictor on the largest HOG detection; the eye
  centres are the means of points 36-41 and 42-47 (the iBUG eye contours).
An image whose SR (or HR) has no detectable face (no RetinaFace box above 0.5; no HOG detection)
gets no value and is listed in failures.csv: neither backend falls back to the whole image.

Detection accuracy: dlib's frontal HOG+SVM detector on the 64 px SR image, upsampled once by dlib
(``upsample_num_times=1``, score threshold 0.0); an image counts as a hit when at least one face is
found. Accuracy = share of hits (each test image holds exactly one face).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..io.resize import resize_uint8, resized_batch

UPSAMPLE = 4
HOG_UPSAMPLE = 1
HOG_THRESHOLD = 0.0
RETINA_CONF = 0.5


class RetinaFaceLandmarks:
    """5 RetinaFace landmarks (10 numbers, 64 px coordinates; NaN when no face is found)."""

    key = "retinaface-mobilenet0.25-5pt/up4/v1"
    requirements = needs(modules=(("torchvision", "pip install torchvision"),), weights=("retinaface-mobilenet0.25",))

    @staticmethod
    def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RetinaFace's points 0 and 1 are the eye centres."""
        return points[0], points[1]

    def __init__(self, device: str = "cpu", weights_path: str | None = None) -> None:
        from ..networks.retinaface import RetinaFace
        from ..assets.safeload import loading_into
        from ..assets.weights import load_state_dict, strip_prefix

        sd, self.resolved = load_state_dict("retinaface-mobilenet0.25", weights_path)
        self.net = RetinaFace("mobilenet0.25")
        with loading_into("retinaface-mobilenet0.25", self.resolved.path, "RetinaFace (mobilenet0.25)"):
            self.net.load_state_dict(strip_prefix(sd, "module."), strict=True)
        self.net.eval().to(device)
        self.device = device
        self.batch = 256 if str(device).startswith("cuda") else 16  # images per forward pass

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Each image 4x bicubic-upsampled, the images of one size in one forward pass; the top-scoring
        face's points when its score passes the threshold, else NaN."""
        from ..networks.retinaface import best_landmarks

        out = np.full((len(images), 10), np.nan)
        by_size: dict[tuple[int, int], list[int]] = {}
        for k, im in enumerate(images):
            by_size.setdefault(im.shape[:2], []).append(k)
        for (h, w), idx in by_size.items():
            for s in range(0, len(idx), self.batch):
                part = idx[s:s + self.batch]
                big = resized_batch([images[k] for k in part], (h * UPSAMPLE, w * UPSAMPLE), self.device)
                scores, lms = best_landmarks(self.net, big)
                for k, score, pts in zip(part, scores, lms):
                    if score > RETINA_CONF:
                        out[k] = (pts / UPSAMPLE).reshape(-1)
        return out


class Dlib68Landmarks:
    """dlib's 68 landmarks (136 numbers, 64 px coordinates)."""

    key = "dlib-68pt/up4/v2"
    requirements = needs(modules=(("dlib", "pip install dlib-bin"),), weights=("dlib-shape-68",))
    cpu_parallel = True  # one core per call: --workers processes share the images (scgan_bench.run.parallel)

    @classmethod
    def shared(cls) -> "Dlib68Landmarks":
        """The process's instance for the current weight file (loaded once for both landmark metrics)."""
        from ..run.features import shared_extractor

        return shared_extractor(cls, ("dlib-shape-68",))

    @staticmethod
    def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means of the two iBUG eye contours (points 36-41 and 42-47)."""
        return points[36:42].mean(axis=0), points[42:48].mean(axis=0)

    def __init__(self) -> None:
        import dlib

        from ..assets.weights import dlib_model

        self.det = dlib.get_frontal_face_detector()
        self.sp = dlib_model(dlib.shape_predictor, "dlib-shape-68")

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.full((len(images), 136), np.nan)
        for k, im in enumerate(images):
            h, w = im.shape[:2]
            big = resize_uint8(im, (h * UPSAMPLE, w * UPSAMPLE), "bicubic")
            dets = self.det(big, 0)
            if not len(dets):
                continue  # no face: no landmarks (NaN), reported as a missing value
            shape = self.sp(big, max(dets, key=lambda r: r.area()))
            pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)
            out[k] = ((pts + 0.5) / UPSAMPLE - 0.5).reshape(-1)  # pixel-centre convention
        return out


@dataclass
class LandmarkError:
    extractor: FeatureExtractor
    normalised: bool

    def compute(self, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]):
        per = {}
        for i, f in sr.items():
            a, b = f.reshape(-1, 2), ref[i].reshape(-1, 2)
            if np.isnan(a).any() or np.isnan(b).any():
                continue  # no face detected: reported by the runner as a missing value
            err = float(np.mean(np.abs(a - b).sum(axis=1)))
            if self.normalised:
                left, right = self.extractor.eye_centres(b)
                err /= max(float(np.linalg.norm(left - right)), 1e-6)
            per[i] = err
        if not per:
            raise ValueError("no image had a detectable face in both SR and HR")
        return per, {"": float(np.mean(list(per.values())))}


@dataclass
class HogDetection:
    upsample: int = HOG_UPSAMPLE
    threshold: float = HOG_THRESHOLD
    cpu_parallel = True  # one core per call: --workers processes share the images (scgan_bench.run.parallel)

    def __post_init__(self) -> None:
        import dlib

        self.det = dlib.get_frontal_face_detector()

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        return [1.0 if len(self.det.run(im, self.upsample, self.threshold)[0]) else 0.0 for im in sr]


_RETINA = RetinaFaceLandmarks.requirements
_DLIB68 = Dlib68Landmarks.requirements
_CONV = "l1 = mean over landmarks of |dx|+|dy|"
for _name, _feat, _norm, _avail, _summary, _backend in (
        ("landmark-retinaface", lambda device="cpu": RetinaFaceLandmarks(device), False, _RETINA,
         "RetinaFace 5-point landmark l1 error SR vs HR, pixels at 64 px (Fig. 10)", "retinaface"),
        ("landmark-retinaface-nio", lambda device="cpu": RetinaFaceLandmarks(device), True, _RETINA,
         "RetinaFace 5-point landmark l1 error / HR inter-ocular distance", "retinaface"),
        ("landmark-dlib68", lambda device="cpu": Dlib68Landmarks.shared(), False, _DLIB68,
         "dlib 68-point landmark l1 error SR vs HR, pixels at 64 px (offline backend)", "dlib"),
        ("landmark-dlib68-nio", lambda device="cpu": Dlib68Landmarks.shared(), True, _DLIB68,
         "dlib 68-point landmark l1 error / HR inter-ocular distance (offline backend)", "dlib")):
    METRICS.register(_name, MetricSpec(
        name=_name, factory=lambda device="cpu", _f=_feat, _n=_norm: LandmarkError(_f(device), _n),
        summary=_summary, higher_is_better=False, version="2", needs_hr=True, kind="set", reference="paired",
        availability=_avail, backend=_backend,
        convention=_CONV + (", / distance between the HR eye centres" if _norm else ", pixels at 64 px")
        + "; no face detected: no value"))

METRICS.register("hog-detect", MetricSpec(
    name="hog-detect", factory=lambda device="cpu": HogDetection(), higher_is_better=True, version="1",
    summary="HOG+SVM (dlib) face detection accuracy on SR images (Table 6)", needs_hr=False,
    availability=needs(modules=(("dlib", "pip install dlib-bin"),)), backend="dlib",
    convention=f"dlib frontal HOG detector, upsample {HOG_UPSAMPLE}, threshold {HOG_THRESHOLD}, "
               "hit = at least one face"))
