"""Face landmarks: MediaPipe's face mesh (468 points), with the weights its wheel ships, offline.

The builder uses it to map an avatar's face and mouth; the sync benchmark uses it to measure how open
the mouth is on decoded program frames. Indices below are MediaPipe's canonical face-mesh numbering.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import cv2
import numpy as np

POINTS = 468
FOREHEAD, CHIN = 10, 152
CHEEK_LEFT, CHEEK_RIGHT = 234, 454
NOSE_TIP = 1
LIP_TOP_INNER, LIP_BOTTOM_INNER = 13, 14
LIP_TOP_OUTER, LIP_BOTTOM_OUTER = 0, 17
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
JAW = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)


def detector_version() -> str:
    """The detector that found an avatar's landmarks, for its manifest."""
    import mediapipe  # noqa: PLC0415 (heavy: only the builder and the sync tool need it)

    return f"mediapipe-face-mesh {mediapipe.__version__}"


class FaceLandmarker:
    """Finds the 468 face-mesh points of the largest face in BGR images, in pixel coordinates.

    ``tracking=True`` suits consecutive video frames (the mesh follows the face between frames);
    ``False`` treats each image on its own. Close it (or use ``with``) to free the graph.
    """

    def __init__(self, tracking: bool = False) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe  # noqa: PLC0415 (heavy import, paid only by callers)

        self._mesh: Any = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=not tracking,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """(468, 2) float32 pixel coordinates, or None when no face is found."""
        h, w = image.shape[:2]
        result = self._mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h) for p in points], np.float32)

    def close(self) -> None:
        """Release the detector."""
        self._mesh.close()

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def face_height(points: np.ndarray) -> float:
    """Forehead to chin, in pixels: the yardstick that makes mouth measures size-independent."""
    return float(np.linalg.norm(points[CHIN] - points[FOREHEAD]))


def mouth_opening(points: np.ndarray) -> float:
    """The gap between the inner lips as a share of the face height (0 closed, ~0.1 wide open)."""
    gap = float(np.linalg.norm(points[LIP_BOTTOM_INNER] - points[LIP_TOP_INNER]))
    return gap / max(face_height(points), 1.0)


def box_of(points: np.ndarray, indices: tuple[int, ...] | None = None) -> tuple[int, int, int, int]:
    """The bounding box (x, y, w, h) of some points (all when ``indices`` is None)."""
    chosen = points if indices is None else points[list(indices)]
    x0, y0 = np.floor(chosen.min(axis=0)).astype(int)
    x1, y1 = np.ceil(chosen.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)
