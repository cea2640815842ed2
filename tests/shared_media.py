"""Where the workplace's read-only media lie: ../shared/media beside the checkout (absent in CI).

Tests that use these files skip when they are missing; nothing here is ever copied into the repo.
"""
from pathlib import Path

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
REAL_SPLAT_PLY = SHARED_MEDIA / "splats" / "douglas0406_GSHairLoD__donut_fused.ply"
