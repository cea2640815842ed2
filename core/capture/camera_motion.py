"""Per-frame camera rotation, and translation up to one global scale, from background feature tracks.

A moving camera makes a standing person appear to move, so the capture needs the camera's own motion to
place the body in a fixed world. Following TRAM, the person is masked out: only points on the static
background, outside the (dilated) person mask, are tracked, so the subject's motion cannot pass for
camera motion.

Two passes:

1. Tracking: Shi-Tomasi corners (goodFeaturesToTrack) followed with pyramidal Lucas-Kanade on grey frames
   of at most WORK_MAX_SIDE pixels, each step checked forward-backward; tracks that die are replaced by new
   corners in free background. Every track keeps one id for its whole life.
2. Poses: monocular visual odometry against a 3D map of the background, so that every translation is
   measured in the same units:
   - While the tracks show no parallax beyond a pure rotation, each frame's rotation comes from the
     current keyframe by the pure-rotation model x1 ~ K R K^-1 x0 (homography RANSAC inliers, then a
     Kabsch fit on bearing vectors) and the camera centre stays put: a panning or static camera gets
     translations of exactly zero.
   - Once the median residual of that model (the parallax) exceeds INIT_PARALLAX_PX, the essential
     matrix (findEssentialMat with USAC_ACCURATE, whose local optimisation matters at small baselines)
     and recoverPose give the relative pose; its baseline fixes the map's scale. The frames in between
     are re-posed against the new map.
   - From then on every frame is posed by PnP (solvePnPRansac) against the map. A map point is the
     least-squares intersection of all of its track's rays from posed frames, so it sharpens as the track
     lives on; it joins the map once its rays span MIN_TRI_ANGLE_DEG. Since every pose is measured against
     the same map, every translation shares one scale (it drifts slowly, as in any monocular odometry,
     but never jumps).
   - If the map runs dry (a pure pan after a walk: no new point can be triangulated) the rotation-only
     model takes over, and when parallax returns a new map starts with an unknown scale: a new scale
     segment, rescaled afterwards so that the camera moves as fast as it did in the segment before
     (a guess; CameraMotion.scale_segments says where it was made).
   Tracks that break with the background's motion (a PnP outlier, or far off a well-fitting rotation)
   are dropped for good: whatever moves and the mask missed cannot take over the estimate later.
   Frames where no estimator has enough support are bridged by interpolation and marked unreliable.

Frames: OpenCV camera axes (x right, y down, z forward); world = camera of the first frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from ..rotations import axis_angle_to_quat, matrix_to_quat, quat_multiply, quat_to_axis_angle, quat_to_matrix

if TYPE_CHECKING:
    from .video import VideoInfo

WORK_MAX_SIDE = 320  # tracking resolution (pixels of the longest side); all *_PX constants are in these pixels
MAX_FEATURES = 200
REDETECT_BELOW = 0.7  # re-detect corners when fewer than this fraction of MAX_FEATURES is alive
MIN_CORNER_DISTANCE_PX = 8
CORNER_QUALITY = 0.01
LK_WINDOW = (11, 11)
LK_LEVELS = 3
FORWARD_BACKWARD_MAX_PX = 0.7
MAX_GAP_FRAMES = 5  # frames (flash, blur, unreadable) that tracking may skip, following on from the last good one
MASK_DILATE_FRACTION = 0.03  # of the longest image side: hair, motion blur and shadows around the person

MIN_TRACKS = 20  # fewest tracks (shared with the keyframe) to pose a frame by rotation
MIN_PNP_INLIERS = 15  # fewest map points agreeing with a PnP pose
ROTATION_THRESHOLD_PX = 1.0
ESSENTIAL_THRESHOLD_PX = 1.0
PNP_THRESHOLD_PX = 2.0
INIT_PARALLAX_PX = 4.0  # median residual of the pure-rotation model that proves translation
# A track off a well-fitting rotation (median residual under INIT_PARALLAX_PX) by more than MOVING_PX and
# MOVING_RATIO times the median moves with something else than the background: dropped for good.
MOVING_PX = 12.0
MOVING_RATIO = 5.0
KEYFRAME_OVERLAP = 0.5  # a new rotation keyframe when fewer of its tracks survive
MIN_TRI_ANGLE_DEG = 1.0
TRI_REPROJECTION_PX = 1.5
MIN_MAP_POINTS = 30
SPEED_WINDOW = 10  # frames over which camera speeds are measured

_FAILED, _ROTATION_ONLY, _METRIC = 0, 1, 2


@dataclass(frozen=True)
class CameraMotion:
    """The camera's motion through a clip, relative to its first frame.

    rotations (T,3,3) and translations (T,3) make world_to_cam_t = [R_t | t_t] (x_cam = R_t x_world + t_t)
    where the world is the camera of frame 0 (R_0 = I, t_0 = 0), OpenCV axes (x right, y down, z forward).
    Translations share one unknown global scale, normalised so that the camera centre farthest from the
    first one (centre_t = -R_t^T t_t) is at distance 1; all zeros when no translation was detected
    (static or purely rotating camera). inlier_counts (T,) are the background points that supported each
    frame's pose; reliable (T,) is False where the pose was interpolated from neighbouring frames.
    scale_segments (T,) int: frames with equal values share a measured scale; where the value changes the
    background map was lost and the next segment's scale is a guess (same camera speed as before), which
    a fit may refine per segment. All 0 in the usual case of one unbroken map.
    """

    rotations: np.ndarray
    translations: np.ndarray
    inlier_counts: np.ndarray
    reliable: np.ndarray
    scale_segments: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        """Camera centres (T,3) in the frame-0 camera's frame, same scale as the translations."""
        return -np.einsum("tji,tj->ti", self.rotations, self.translations)


@dataclass
class _Tracks:
    """Background tracks per frame: ids (N_t,) ascending int and points (N_t,2) in work-image pixels."""

    ids: list[np.ndarray]
    points: list[np.ndarray]
    n_ids: int


def estimate_camera_motion(
    video: "VideoInfo",
    frame_indices: np.ndarray,
    K: np.ndarray,
    masks: np.ndarray | None,
    mask_scale: float,
    report: Callable[[str, float, str], None] | None = None,
) -> CameraMotion:
    """Camera motion for the video frames `frame_indices` (T,) (ascending video frame numbers).

    K (3,3) are the intrinsics in full-resolution upright pixels. masks (T,mh,mw) uint8 (255 = person),
    covering the whole frame at mask_scale full-resolution pixels per mask pixel, keep the person out of
    the estimate; None tracks the whole frame. report(stage, fraction, message) is called now and then.
    """
    from .video import iter_frames

    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    if frame_indices.ndim != 1 or len(frame_indices) == 0 or np.any(np.diff(frame_indices) <= 0):
        raise ValueError("frame_indices must be a non-empty ascending 1-D array of video frame numbers")
    if masks is not None and len(masks) != len(frame_indices):
        raise ValueError(f"masks has {len(masks)} frames, frame_indices {len(frame_indices)}")
    frames = iter_frames(video, int(frame_indices[0]), int(frame_indices[-1]) + 1, WORK_MAX_SIDE)
    wanted = {int(index): i for i, index in enumerate(frame_indices)}
    selected = ((wanted[f.index], f.image_bgr, f.scale) for f in frames if f.index in wanted)
    return _estimate_from_frames(selected, len(frame_indices), K, masks, mask_scale, report)


def _estimate_from_frames(
    frames: Iterable[tuple[int, np.ndarray, float]],
    n_frames: int,
    K_fullres: np.ndarray,
    masks: np.ndarray | None,
    mask_scale: float,
    report: Callable[[str, float, str], None] | None,
) -> CameraMotion:
    """Track, then pose; frames yield (position in the clip, BGR image at work size, full-res px per px)."""
    tracks, scale = _track_background(frames, n_frames, masks, mask_scale, report)
    K_work = _scaled_intrinsics(np.asarray(K_fullres, dtype=np.float64), scale)
    return _PoseSolver(tracks, K_work).solve()


def _scaled_intrinsics(K: np.ndarray, scale: float) -> np.ndarray:
    """Intrinsics for an image resized by 1/scale (cv2.resize maps pixel centres: x' = (x + 0.5)/s - 0.5)."""
    K_work = K.copy()
    K_work[:2, :2] /= scale
    K_work[:2, 2] = (K[:2, 2] + 0.5) / scale - 0.5
    return K_work


def _track_background(
    frames: Iterable[tuple[int, np.ndarray, float]],
    n_frames: int,
    masks: np.ndarray | None,
    mask_scale: float,
    report: Callable[[str, float, str], None] | None,
) -> tuple[_Tracks, float]:
    """LK tracks of background corners.

    Frames the reader never delivered, and up to MAX_GAP_FRAMES in a row where the tracks break (a flash,
    heavy blur), get no tracks: the tracks go on from the last good frame, and the solver bridges the gap.
    """
    import cv2

    lk = dict(winSize=LK_WINDOW, maxLevel=LK_LEVELS,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))
    ids: list[np.ndarray] = [np.zeros(0, np.int64)] * n_frames
    points: list[np.ndarray] = [np.zeros((0, 2))] * n_frames
    prev_grey = None
    prev_pts = np.zeros((0, 1, 2), np.float32)
    prev_ids = np.zeros(0, np.int64)
    next_id = 0
    gap = 0
    scale = 1.0
    for position, image_bgr, scale in frames:
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        person = _person_mask(masks[position], mask_scale / scale, (w, h)) if masks is not None else None
        pts, pt_ids = np.zeros((0, 1, 2), np.float32), np.zeros(0, np.int64)
        if prev_grey is not None and len(prev_pts):
            fwd, ok_f, _ = cv2.calcOpticalFlowPyrLK(prev_grey, grey, prev_pts, None, **lk)
            back, ok_b, _ = cv2.calcOpticalFlowPyrLK(grey, prev_grey, fwd, None, **lk)
            good = (ok_f[:, 0] == 1) & (ok_b[:, 0] == 1)
            good &= np.linalg.norm((back - prev_pts)[:, 0], axis=1) < FORWARD_BACKWARD_MAX_PX
            xy = fwd[:, 0]
            good &= (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
            if person is not None:  # a background point the person walks over is occluded, not moving
                inside = person[np.clip(xy[:, 1].round().astype(int), 0, h - 1),
                                np.clip(xy[:, 0].round().astype(int), 0, w - 1)] > 0
                good &= ~inside
            pts, pt_ids = fwd[good], prev_ids[good]
            if len(pts) < MIN_TRACKS <= len(prev_pts) and gap < MAX_GAP_FRAMES:
                gap += 1
                continue
        gap = 0
        if len(pts) < REDETECT_BELOW * MAX_FEATURES:
            free = np.full((h, w), 255, np.uint8)
            if person is not None:
                free[person > 0] = 0
            for x, y in pts[:, 0]:
                cv2.circle(free, (int(x), int(y)), MIN_CORNER_DISTANCE_PX, 0, -1)
            new = cv2.goodFeaturesToTrack(grey, MAX_FEATURES - len(pts), CORNER_QUALITY,
                                          MIN_CORNER_DISTANCE_PX, mask=free, blockSize=5)
            if new is not None:
                pts = np.concatenate([pts, new.astype(np.float32)])
                pt_ids = np.concatenate([pt_ids, np.arange(next_id, next_id + len(new))])
                next_id += len(new)
        ids[position], points[position] = pt_ids, pts[:, 0].astype(np.float64)
        prev_grey, prev_pts, prev_ids = grey, pts, pt_ids
        if report is not None and position % 30 == 0:
            report("camera motion", position / n_frames, f"tracking background, frame {position + 1}/{n_frames}")
    return _Tracks(ids, points, next_id), scale


def _person_mask(mask: np.ndarray, mask_px: float, size: tuple[int, int]) -> np.ndarray:
    """The person mask, dilated by MASK_DILATE_FRACTION, on the work image of `size` (w, h); nonzero = person.

    mask_px: work-image pixels per mask pixel (both grids cover the frame from its top-left corner).
    """
    import cv2

    radius = max(1, int(round(MASK_DILATE_FRACTION * max(mask.shape))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate((mask > 127).astype(np.uint8), kernel)
    # work pixel centre x -> mask pixel centre (x + 0.5) / mask_px - 0.5
    work_to_mask = np.array([[1.0 / mask_px, 0.0, 0.5 / mask_px - 0.5], [0.0, 1.0 / mask_px, 0.5 / mask_px - 0.5]])
    return cv2.warpAffine(grown, work_to_mask, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


class _PoseSolver:
    """Turns background tracks into per-frame world_to_cam poses (see the module docstring)."""

    def __init__(self, tracks: _Tracks, K: np.ndarray) -> None:
        self.tracks = tracks
        self.K = K
        self.K_inv = np.linalg.inv(K)
        T = len(tracks.ids)
        self.R = np.tile(np.eye(3), (T, 1, 1))
        self.t = np.zeros((T, 3))
        self.quality = np.full(T, _FAILED)
        self.inliers = np.zeros(T, np.int64)
        self.map_xyz = np.zeros((tracks.n_ids, 3))
        self.map_valid = np.zeros(tracks.n_ids, bool)
        self.moving = np.zeros(tracks.n_ids, bool)  # tracks that broke with the background's motion
        self.anchor_frame = np.full(tracks.n_ids, -1)  # first metric frame seeing the track
        self.anchor_dir = np.zeros((tracks.n_ids, 3))  # world direction of the track's ray in that frame
        self.ray_A = np.zeros((tracks.n_ids, 3, 3))  # sum of (I - d d^T) over the track's metric views
        self.ray_b = np.zeros((tracks.n_ids, 3))  # sum of (I - d d^T) c (c: camera centre)
        self.metric = False  # is there a map to pose against?
        self.segments = 0  # maps started so far
        self.segment = np.zeros(T, np.int64)  # scale segment of each frame (see CameraMotion)

    # -- driver ---------------------------------------------------------------------------------------
    def solve(self) -> CameraMotion:
        T = len(self.R)
        self.quality[0] = _ROTATION_ONLY
        self.inliers[0] = len(self.tracks.ids[0])
        keyframe = 0
        for t in range(1, T):
            self.segment[t] = max(self.segments - 1, 0)
            if len(self.tracks.ids[t]) < MIN_TRACKS:  # nothing to measure: bridged afterwards
                continue
            if self.metric and self._pose_pnp(t):
                self._observe(t)
                self._update_points(t)
                keyframe = t
                continue
            if self.metric:  # the map ran dry: rotation only from the last metric frame
                self.metric = False
                keyframe = self._last_posed(t)
            keyframe = self._pose_rotation_only(t, keyframe)
        self._bridge_failed()
        self._match_segment_speeds()
        return self._result()

    def _last_posed(self, t: int) -> int:
        posed = np.flatnonzero(self.quality[:t] != _FAILED)
        return int(posed[-1]) if len(posed) else 0

    # -- rotation-only stretch and map initialisation -------------------------------------------------
    def _pose_rotation_only(self, t: int, keyframe: int) -> int:
        """Pose frame t from `keyframe` by pure rotation, or start a map; returns the keyframe to use next."""
        common = self._common(keyframe, t)
        kf_count = len(self.tracks.ids[keyframe])
        if (len(common[0]) < max(MIN_TRACKS, KEYFRAME_OVERLAP * kf_count)
                and t - 1 > keyframe and self.quality[t - 1] != _FAILED):
            keyframe = t - 1
            common = self._common(keyframe, t)
        if len(common[0]) < MIN_TRACKS:
            # Tracking broke (cut, blur, blank wall): keep the last pose, restart from this frame.
            last = self._last_posed(t)
            self.R[t], self.t[t] = self.R[last], self.t[last]
            return t
        p0, p1 = self.tracks.points[keyframe][common[1]], self.tracks.points[t][common[2]]
        R_rel, residual = self._fit_rotation(p0, p1)
        parallax = float(np.median(residual))
        if parallax > INIT_PARALLAX_PX and self._start_map(keyframe, t, common[0], p0, p1):
            return t
        n_inliers = int((residual < 1.5 * max(ROTATION_THRESHOLD_PX, parallax)).sum())
        if n_inliers < MIN_TRACKS:
            return keyframe
        if parallax < INIT_PARALLAX_PX:
            self.moving[common[0][residual > max(MOVING_PX, MOVING_RATIO * parallax)]] = True
        self.R[t] = R_rel @ self.R[keyframe]
        self.t[t] = R_rel @ self.t[keyframe]  # same centre as the keyframe
        self.quality[t] = _ROTATION_ONLY
        self.inliers[t] = n_inliers
        return keyframe

    def _fit_rotation(self, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pure-rotation model p1 ~ K R K^-1 p0: (R, residual of each track in px).

        The homography's RANSAC inliers seed a Kabsch fit on the tracks' bearing vectors, refit on the
        tracks within 1.5 * max(ROTATION_THRESHOLD_PX, median residual of the current inliers), so lens
        distortion or a little parallax widen the inlier band instead of failing the frame, while tracks
        on moving things stay out. A translating camera leaves a large median residual: the parallax that
        tells rotation from translation.
        """
        import cv2

        H, inlier = cv2.findHomography(p0, p1, cv2.RANSAC, ROTATION_THRESHOLD_PX)
        inlier = np.ones(len(p0), bool) if H is None or inlier.sum() < MIN_TRACKS else inlier[:, 0] > 0
        b0, b1 = self._bearings(p0), self._bearings(p1)
        for _ in range(3):
            R = _nearest_rotation(b1[inlier].T @ b0[inlier])
            residual = self._rotation_residual(R, b0, p1)
            band = 1.5 * max(ROTATION_THRESHOLD_PX, float(np.median(residual[inlier])))
            inlier = residual < band
            if inlier.sum() < 3:
                break
        return R, residual

    def _start_map(self, keyframe: int, t: int, ids: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> bool:
        """Relative pose keyframe -> t from the essential matrix, triangulate, re-pose frames in between."""
        import cv2

        E, mask = cv2.findEssentialMat(p0, p1, self.K, cv2.USAC_ACCURATE, 0.999, ESSENTIAL_THRESHOLD_PX)
        if E is None or E.shape[0] < 3:
            return False
        n_good, R_rel, t_dir, mask = cv2.recoverPose(E[:3], p0, p1, self.K, mask=mask)
        if n_good < max(MIN_MAP_POINTS, 0.5 * len(ids)):
            return False
        R_t = R_rel @ self.R[keyframe]
        t_t = R_rel @ self.t[keyframe] + t_dir[:, 0]  # unit baseline; _match_segment_speeds rescales
        self.map_valid[:] = False
        self.anchor_frame[:] = -1
        self.ray_A[:] = 0.0
        self.ray_b[:] = 0.0
        self.R[t], self.t[t] = R_t, t_t
        self._observe(keyframe)
        self._observe(t)
        if self._update_points(t) < MIN_MAP_POINTS:
            return False
        self.quality[keyframe] = self.quality[t] = _METRIC
        self.inliers[t] = int(self.map_valid.sum())
        self.metric = True
        self.segment[keyframe + 1:t + 1] = self.segments
        self.segments += 1
        for between in range(keyframe + 1, t):
            previous_centre = _centre(self.R[between], self.t[between])
            if self._pose_pnp(between):
                self._observe(between)
            else:  # keep its rotation, put its centre on the straight line between the two keyframes
                a = (between - keyframe) / (t - keyframe)
                centre = (1 - a) * previous_centre + a * _centre(R_t, t_t)
                self.t[between] = -self.R[between] @ centre
        self._update_points(t)
        return True

    # -- metric stretch -------------------------------------------------------------------------------
    def _pose_pnp(self, t: int) -> bool:
        """Pose frame t against the map (PnP RANSAC from the nearest earlier pose); drops outlier points."""
        import cv2

        ids, pts = self.tracks.ids[t], self.tracks.points[t]
        on_map = self.map_valid[ids] & ~self.moving[ids]
        if on_map.sum() < MIN_PNP_INLIERS:
            return False
        guess = self._last_posed(t)
        rvec0, _ = cv2.Rodrigues(self.R[guess])
        tvec0 = self.t[guess].reshape(3, 1).copy()
        ok, rvec, tvec, inl = cv2.solvePnPRansac(
            self.map_xyz[ids[on_map]], pts[on_map], self.K, None, rvec0, tvec0, useExtrinsicGuess=True,
            iterationsCount=50, reprojectionError=PNP_THRESHOLD_PX, confidence=0.99,
            flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or inl is None or len(inl) < MIN_PNP_INLIERS:
            return False
        keep = np.zeros(int(on_map.sum()), bool)
        keep[inl[:, 0]] = True
        outliers = ids[on_map][~keep]
        self.map_valid[outliers] = False
        self.moving[outliers] = True
        self.R[t], _ = cv2.Rodrigues(rvec)
        self.t[t] = tvec[:, 0]
        self.quality[t] = _METRIC
        self.inliers[t] = len(inl)
        return True

    def _observe(self, t: int) -> None:
        """Add frame t's rays to the least-squares intersection of each track it sees (t has a metric pose).

        A map point is the point nearest, in the least-squares sense, to all of its track's rays from
        metric frames, so its noise averages out as the track lives on instead of being fixed by two views.
        """
        ids = self.tracks.ids[t]
        fresh = self.anchor_frame[ids] == -1
        self.anchor_frame[ids[fresh]] = t
        use = (self.anchor_frame[ids] >= 0) & ~self.moving[ids]
        ids, fresh = ids[use], fresh[use]
        directions = self._bearings(self.tracks.points[t][use]) @ self.R[t]  # world frame: R^T b
        self.anchor_dir[ids[fresh]] = directions[fresh]
        projector = np.eye(3) - directions[:, :, None] * directions[:, None, :]
        self.ray_A[ids] += projector
        self.ray_b[ids] += projector @ _centre(self.R[t], self.t[t])

    def _update_points(self, t: int) -> int:
        """Intersect the rays of the tracks frame t sees; returns how many now form the map.

        A point joins (or stays in) the map when its rays meet at MIN_TRI_ANGLE_DEG or more, it lies in
        front of its first and the current camera, and it reprojects into frame t within
        TRI_REPROJECTION_PX.
        """
        ids, pts = self.tracks.ids[t], self.tracks.points[t]
        anchor = self.anchor_frame[ids]
        use = (anchor >= 0) & (anchor != t) & ~self.moving[ids]
        ids, pts, anchor = ids[use], pts[use], anchor[use]
        directions = self._bearings(pts) @ self.R[t]
        ok = np.sum(directions * self.anchor_dir[ids], axis=1) < np.cos(np.radians(MIN_TRI_ANGLE_DEG))
        xyz = np.zeros((len(ids), 3))
        if ok.any():
            xyz[ok] = np.linalg.solve(self.ray_A[ids[ok]], self.ray_b[ids[ok]][..., None])[..., 0]
        ok &= np.sum((xyz - _centre(self.R[anchor], self.t[anchor])) * self.anchor_dir[ids], axis=1) > 0
        cam = xyz @ self.R[t].T + self.t[t]
        ok &= cam[:, 2] > 1e-9
        with np.errstate(divide="ignore", invalid="ignore"):
            projected = cam[:, :2] / cam[:, 2:] @ self.K[:2, :2].T + self.K[:2, 2]
        ok &= np.linalg.norm(projected - pts, axis=1) < TRI_REPROJECTION_PX
        self.map_xyz[ids[ok]] = xyz[ok]
        self.map_valid[ids] = ok
        return int(self.map_valid.sum())

    def _moving_speed(self, segment: int) -> float:
        """Typical camera speed (centre distance per frame) of a scale segment while it moved, or 0.

        The median of the SPEED_WINDOW-frame speeds above a third of the segment's fastest, so pauses
        (a pan from a standing position) do not count.
        """
        frames = np.flatnonzero((self.segment == segment) & (self.quality == _METRIC))
        if len(frames) <= SPEED_WINDOW:
            return 0.0
        centres = _centre(self.R[frames], self.t[frames])
        speeds = (np.linalg.norm(centres[SPEED_WINDOW:] - centres[:-SPEED_WINDOW], axis=1)
                  / (frames[SPEED_WINDOW:] - frames[:-SPEED_WINDOW]))
        return float(np.median(speeds[speeds >= speeds.max() / 3.0]))

    def _match_segment_speeds(self) -> None:
        """Give each later scale segment the moving speed of the one before (the scale lost with the map).

        Segment k starts at its keyframe (the frame before its first), whose centre is known in the
        previous segment's scale; every later centre is scaled about it, so later segments stay attached.
        """
        for k in range(1, self.segments):
            before, now = self._moving_speed(k - 1), self._moving_speed(k)
            if before <= 0 or now <= 0:
                continue
            start = int(np.flatnonzero(self.segment == k)[0])
            origin = _centre(self.R[start - 1], self.t[start - 1])
            centres = origin + (before / now) * (_centre(self.R[start:], self.t[start:]) - origin)
            self.t[start:] = -np.einsum("tij,tj->ti", self.R[start:], centres)

    # -- helpers --------------------------------------------------------------------------------------
    def _common(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Background track ids seen in frames a and b, with their positions in each frame's arrays."""
        ids, in_a, in_b = np.intersect1d(self.tracks.ids[a], self.tracks.ids[b], assume_unique=True,
                                         return_indices=True)
        keep = ~self.moving[ids]
        return ids[keep], in_a[keep], in_b[keep]

    def _bearings(self, p: np.ndarray) -> np.ndarray:
        rays = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ self.K_inv.T
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def _rotation_residual(self, R: np.ndarray, b0: np.ndarray, p1: np.ndarray) -> np.ndarray:
        """Pixel distance between p1 and the bearings b0 rotated by R and projected (inf behind the camera)."""
        q = b0 @ (self.K @ R).T
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.linalg.norm(q[:, :2] / q[:, 2:] - p1, axis=1)
        return np.where(q[:, 2] > 1e-9, residual, np.inf)

    def _bridge_failed(self) -> None:
        """Interpolate failed frames between their posed neighbours (slerp rotation, lerp centre)."""
        posed = np.flatnonzero(self.quality != _FAILED)
        for t in np.flatnonzero(self.quality == _FAILED):
            before, after = posed[posed < t], posed[posed > t]
            if len(before) == 0 and len(after) == 0:
                return
            if len(before) == 0 or len(after) == 0:
                source = int(after[0] if len(before) == 0 else before[-1])
                self.R[t], self.t[t] = self.R[source], self.t[source]
                continue
            a, b = int(before[-1]), int(after[0])
            w = (t - a) / (b - a)
            qa, qb = matrix_to_quat(self.R[a]), matrix_to_quat(self.R[b])
            q_conj = qa * np.array([1.0, -1.0, -1.0, -1.0])
            step = quat_to_axis_angle(quat_multiply(qb, q_conj))
            self.R[t] = quat_to_matrix(quat_multiply(axis_angle_to_quat(w * step), qa))
            centre = (1 - w) * _centre(self.R[a], self.t[a]) + w * _centre(self.R[b], self.t[b])
            self.t[t] = -self.R[t] @ centre

    def _result(self) -> CameraMotion:
        largest = float(np.linalg.norm(_centre(self.R, self.t), axis=1).max())
        t = self.t / largest if largest > 0 else self.t.copy()
        return CameraMotion(rotations=self.R.copy(), translations=t, inlier_counts=self.inliers.copy(),
                            reliable=self.quality != _FAILED, scale_segments=self.segment.copy())


def _nearest_rotation(M: np.ndarray) -> np.ndarray:
    """The rotation matrix closest to M (3,3) in the Frobenius norm."""
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt


def _centre(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera centres (..., 3) of world_to_cam poses: -R^T t."""
    return -np.einsum("...ji,...j->...i", R, t)
