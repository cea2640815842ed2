"""Tile-based alpha compositing of projected splats on the CPU, in torch, with an analytic backward.

gsplat 1.5.3 only rasterizes on CUDA, so this is the reference renderer on every
other machine and what CPU optimisers differentiate. The image is cut into 16x16
pixel tiles; every (tile, splat) pair whose pixel box overlaps is one row of a table
sorted by tile and then by camera depth. Non-empty tiles are grouped with tiles of
similar row counts and composited a block of up to ROW_BLOCK rows at a time, laid
out as (tiles, 256 pixels, rows) and padded to the longest list: a row evaluates its
splat on all 256 pixels of its tile at once, the transmittance in front of each row
is a cumulative product of (1 - alpha) along the rows of its tile, carried from block
to block (front-to-back compositing with gsplat's early termination: a pixel stops
before the splat that would bring its transmittance to 1e-4 or below; a tile whose
pixels have all stopped drops out), and a tile's pixels are one batched matmul of
weights and splat features. Nothing loops per splat or per pixel; blocks bound the
memory and keep the buffers small enough to stay in cache.

The backward pass is written out (``_composite_function``) instead of left to
autograd: it keeps only each block's alpha and transmittance (or, past
SAVED_ELEMENTS_MAX, recomputes them), walks the blocks back to front carrying the
gradient terms of the rows behind, and reduces the per-pixel gradients to per-row sums
over the 16 columns and 16 rows of a tile before touching the splats.

Conventions (shared with gsplat and the viewport shader): pixel centres at
(x + 0.5, y + 0.5); sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with conic (a, b, c);
alpha = min(ALPHA_MAX, opacity exp(-sigma)), skipped when sigma < 0 or alpha < 1/255;
colour premultiplied (no background), alpha = sum of weights, depth = expected depth
(0 where alpha is 0).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

TILE = 16
ALPHA_MAX = 0.99           # the team's rendering convention (gsplat 1.5.3's CUDA kernel uses 0.999)
ALPHA_MIN = 1.0 / 255.0    # splats fainter than this at a pixel are skipped there
TRANSMITTANCE_MIN = 1e-4   # a pixel stops before the splat that would take it to this or below
CHUNK_ROWS = 2048          # padded (tile, splat) rows per block: 2 MB per float32 (256 pixels, rows) buffer
ROW_BLOCK = 256            # rows of a tile composited in one step; tiles whose pixels all stopped drop out
FEATURES = 5               # per splat: R, G, B, depth, 1 (the last one accumulates alpha)


@dataclass(frozen=True)
class TileTable:
    """The (tile, splat) overlaps of one image, grouped for compositing. Tiles are numbered row-major.

    splat_ids (M,) int64: the splats of every tile, tile after tile, front to back within a tile;
    tile_starts (T + 1,) int64: tile t's splats are splat_ids[tile_starts[t]:tile_starts[t + 1]];
    chunks: groups of non-empty tiles (int64 tensors), longest lists first, sized so that a block
    of min(longest, ROW_BLOCK) rows of every tile of the group is about CHUNK_ROWS rows.
    """

    splat_ids: Tensor
    tile_starts: Tensor
    tiles_x: int
    tiles_y: int
    chunks: tuple[Tensor, ...]

    @property
    def count(self) -> int:
        """Number of (tile, splat) overlaps."""
        return len(self.splat_ids)

    def block_rows(self, tiles: Tensor, first: int, length: int) -> Tensor:
        """(len(tiles), length) indices into splat_ids of rows first:first + length of each tile; rows
        past a tile's end are ``count`` (padding)."""
        import torch

        lane = torch.arange(first, first + length)
        starts = self.tile_starts[tiles][:, None]
        rows = starts + lane
        return torch.where(rows < self.tile_starts[tiles + 1][:, None], rows, torch.full_like(rows, self.count))


def build_tile_table(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int) -> TileTable:
    """List every tile each visible splat's pixel box (centre +- radii) touches, sorted by (tile, depth)."""
    import torch

    tiles_x, tiles_y = math.ceil(width / TILE), math.ceil(height / TILE)
    n_tiles = tiles_x * tiles_y
    with torch.no_grad():
        visible = (radii > 0).all(dim=-1).nonzero().squeeze(1)
        front_first = visible[torch.argsort(depths[visible], stable=True)]
        centre = means2d[front_first].to(torch.float64) / TILE
        extent = radii[front_first].to(torch.float64) / TILE
        limit = torch.tensor([tiles_x, tiles_y])
        lo = torch.minimum(torch.floor(centre - extent).clamp(min=0).long(), limit)
        hi = torch.minimum(torch.ceil(centre + extent).clamp(min=0).long(), limit)
        span = hi - lo                                                   # (n, 2) tiles in x and y
        counts = span[:, 0] * span[:, 1]
        owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
        local = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts)[owner]
        tile_x = lo[owner, 0] + local % span[owner, 0]
        tile_y = lo[owner, 1] + local // span[owner, 0]
        tile_ids, order = torch.sort(tile_y * tiles_x + tile_x, stable=True)
        splat_ids = front_first[owner[order]]
        per_tile = torch.bincount(tile_ids, minlength=n_tiles)
        tile_starts = torch.zeros(n_tiles + 1, dtype=torch.int64)
        tile_starts[1:] = torch.cumsum(per_tile, 0)
    return TileTable(splat_ids, tile_starts, tiles_x, tiles_y, _chunks(per_tile))


def _chunks(per_tile: Tensor) -> tuple[Tensor, ...]:
    """Group the non-empty tiles, longest first, so that one block of rows of a group is about CHUNK_ROWS."""
    import torch

    lengths, tiles = torch.sort(per_tile, descending=True, stable=True)
    lengths = lengths.tolist()
    chunks, first = [], 0
    while first < len(lengths) and lengths[first] > 0:
        end = min(first + max(1, CHUNK_ROWS // min(lengths[first], ROW_BLOCK)), len(lengths))
        chunks.append(tiles[first:end])
        first = end
    return tuple(chunks)


def rasterize(means2d: Tensor, conics: Tensor, colours: Tensor, opacities: Tensor, depths: Tensor,
              radii: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor]:
    """Composite N projected splats front to back into a width x height image.

    Inputs as ``project.ProjectedSplats``: means2d (N, 2) px, conics (N, 3), colours (N, 3),
    opacities (N,), depths (N,) metres, radii (N, 2) int (0 = culled). Returns colour
    (H, W, 3) premultiplied, alpha (H, W), expected depth (H, W); differentiable w.r.t.
    means2d, conics, colours, opacities and depths.
    """
    import torch

    table = build_tile_table(means2d, radii, depths, width, height)
    shape = torch.cat([means2d, conics, torch.log(opacities.clamp(min=1e-30))[:, None]], dim=1)
    features = torch.cat([colours, depths[:, None], torch.ones_like(depths)[:, None]], dim=1)
    differentiable = torch.is_grad_enabled() and (shape.requires_grad or features.requires_grad)
    tiles = _composite_function().apply(shape, features, table, differentiable)  # (T, FEATURES, 256)
    image = tiles.reshape(table.tiles_y, table.tiles_x, FEATURES, TILE, TILE).permute(0, 3, 1, 4, 2)
    image = image.reshape(table.tiles_y * TILE, table.tiles_x * TILE, FEATURES)[:height, :width]
    alpha = image[..., 4]
    depth = torch.where(alpha > 0, image[..., 3] / alpha.clamp(min=1e-10), torch.zeros_like(alpha))
    return image[..., :3], alpha, depth


@dataclass
class _Block:
    """One block of rows of a group of tiles: A tiles, L rows each; rows are the LAST axis so the
    front-to-back scans run over contiguous memory."""

    splat_ids: Tensor      # (A, L) splat of each row; padding rows point at the extra splat N
    shape: Tensor          # (A, 6, L) the rows' mx, my, a, b, c, log(opacity)
    dx: Tensor             # (A, 16, L) pixel-centre x minus splat x, per column of the tile
    dy: Tensor             # (A, 16, L) same for y, per row of the tile
    alpha: Tensor | None = None   # (A, 256, L) clamped alpha, 0 where skipped
    reach: Tensor | None = None   # (A, 256, L) transmittance in front of the row, 0 once the pixel stopped


def _block_rows(shape: Tensor, table: TileTable, tiles: Tensor, first: int, length: int) -> _Block:
    """The geometry of rows first:first + length of ``tiles`` (alpha and reach not yet computed)."""
    import torch

    rows = table.block_rows(tiles, first, length)
    sid = table.splat_ids[rows.clamp(max=table.count - 1)]
    sid = torch.where(rows < table.count, sid, torch.full_like(sid, len(shape) - 1))
    row_shape = shape[sid].transpose(1, 2)
    dtype = shape.dtype
    lane = (torch.arange(TILE, dtype=dtype) + 0.5)[:, None]
    origin_x = ((tiles % table.tiles_x) * TILE).to(dtype)[:, None, None]
    origin_y = ((tiles // table.tiles_x) * TILE).to(dtype)[:, None, None]
    dx = (origin_x - row_shape[:, 0:1]) + lane
    dy = (origin_y - row_shape[:, 1:2]) + lane
    return _Block(sid, row_shape, dx, dy)


def _composite_block(block: _Block, carry: Tensor) -> Tensor:
    """Fill block.alpha and block.reach given the transmittance ``carry`` (A, 256) in front of the block
    (0 for pixels already stopped); return the transmittance behind it, likewise 0 where stopped.

    Masks are made with F.threshold and sign rather than comparisons and torch.where, which are
    several times slower on CPU; buffers are updated in place where autograd is not involved.
    """
    import torch
    import torch.nn.functional as F

    dx, dy, row_shape = block.dx, block.dy, block.shape
    a, b, c, log_opacity = row_shape[:, 2:3], row_shape[:, 3:4], row_shape[:, 4:5], row_shape[:, 5:6]
    # sigma[y, x] = 0.5 c dy^2 + dx (0.5 a dx + b dy): a per-row term plus per-column times a sum
    sigma = (0.5 * a * dx)[:, None, :, :] + (b * dy)[:, :, None, :]                # (A, y, x, L)
    sigma.mul_(dx[:, None, :, :]).add_((0.5 * c * dy * dy)[:, :, None, :])
    sigma = F.threshold_(sigma.flatten(1, 2), -_TINY, math.inf)                     # sigma < 0: skipped
    # opacity * exp(-sigma); arguments far below log(1/255) (zeroed next) are raised first: exp is
    # many times slower on very negative arguments
    alpha = sigma.neg_().add_(log_opacity).clamp_(min=_LOG_ALPHA_FLOOR).exp_()
    alpha = F.threshold_(alpha, ALPHA_MIN, 0.0).clamp_(max=ALPHA_MAX)           # (exactly 1/255 is skipped too)
    # transmittance in front of each row and behind the last: carry, carry (1 - a_0), ... in gsplat's order
    through = torch.cumprod(torch.cat([carry[..., None], 1.0 - alpha], dim=-1), dim=-1)
    going = F.threshold(through[..., 1:], TRANSMITTANCE_MIN, 0.0)                  # stop before T <= 1e-4
    block.alpha = alpha
    block.reach = through[..., :-1] * torch.sign(going)
    return going[..., -1]


_LOG_ALPHA_FLOOR = math.log(ALPHA_MIN) - 1.0
_TINY = 1e-30  # so that sigma == 0 (a pixel centre on the mean) counts as sigma >= 0, in float32 and float64
SAVED_ELEMENTS_MAX = 1 << 25  # forward buffer elements kept for the backward pass (128 MB in float32);
                              # blocks past it are recomputed there


@functools.lru_cache(maxsize=None)
def _composite_function():
    """The autograd Function (shape (N, 6), features (N, 5), table, differentiable) -> tiles (T, 5, 256).

    shape rows: mx, my, a, b, c, log(opacity); feature rows: R, G, B, depth, 1; differentiable
    False skips keeping buffers for a backward pass. Built on first use so that importing this
    module does not import torch.
    """
    import torch

    class Composite(torch.autograd.Function):
        @staticmethod
        def forward(ctx, shape, features, table, differentiable):
            shape, features = _with_padding_splat(shape, features)
            out = features.new_zeros(table.tiles_x * table.tiles_y, FEATURES, TILE * TILE)
            budget = SAVED_ELEMENTS_MAX
            plan = []  # per block: tiles, first row, rows, transmittance in front, (alpha, reach) or None
            for tiles in table.chunks:
                remaining = table.tile_starts[tiles + 1] - table.tile_starts[tiles]
                carry = shape.new_ones(len(tiles), TILE * TILE)
                first = 0
                while len(tiles):
                    length = min(ROW_BLOCK, int(remaining.max()) - first)
                    block = _block_rows(shape, table, tiles, first, length)
                    carry_in, carry = carry, _composite_block(block, carry)
                    weight = block.alpha * block.reach
                    out[tiles] += torch.bmm(features[block.splat_ids].transpose(1, 2), weight.transpose(1, 2))
                    if differentiable:
                        budget -= 2 * weight.numel()
                        plan.append((tiles, first, length, carry_in,
                                     (block.alpha, block.reach) if budget >= 0 else None))
                    first += length
                    # go on with the tiles that have rows left and a pixel that has not stopped
                    going = (remaining > first) & (carry.amax(dim=-1) > 0)
                    tiles, remaining, carry = tiles[going], remaining[going], carry[going]
            ctx.save_for_backward(shape, features)
            ctx.table, ctx.plan = table, plan
            return out

        @staticmethod
        def backward(ctx, grad_out):
            shape, features = ctx.saved_tensors
            grads = [torch.zeros_like(shape), torch.zeros_like(features)]
            behind = grad_out.new_zeros(grad_out.shape[0], TILE * TILE)  # sum of dL/dw * w over later rows
            for tiles, first, length, carry_in, kept in reversed(ctx.plan):
                block = _block_rows(shape, ctx.table, tiles, first, length)
                if kept is None:
                    _composite_block(block, carry_in)
                else:
                    block.alpha, block.reach = kept
                behind[tiles] += _block_backward(block, grad_out[tiles], features, grads, behind[tiles])
            return grads[0][:-1], grads[1][:-1], None, None

    return Composite


def _with_padding_splat(shape: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
    """shape and features with one more splat, of log opacity -inf, that padding rows point at."""
    import torch

    pad = shape.new_zeros(1, shape.shape[1])
    pad[0, 5] = -math.inf
    return torch.cat([shape, pad]), torch.cat([features, features.new_zeros(1, features.shape[1])])


def _block_backward(block: _Block, grad_tiles: Tensor, features: Tensor, grads: list[Tensor],
                    behind: Tensor) -> Tensor:
    """Add one block's contribution to the gradients of the (padded) shape and features.

    grad_tiles (A, 5, 256): the loss gradient of the block's tiles; behind (A, 256): the sum of
    dL/dweight * weight over the rows of later blocks. Returns that sum over this block's rows.
    """
    import torch
    import torch.nn.functional as F

    grad_shape, grad_features = grads
    sid = block.splat_ids.flatten()
    alpha, reach = block.alpha, block.reach
    weight = alpha * reach
    row_features = features[block.splat_ids]                                       # (A, L, 5)
    grad_features.index_add_(0, sid, torch.bmm(grad_tiles, weight).transpose(1, 2).flatten(0, 1))
    grad_weight = torch.bmm(grad_tiles.transpose(1, 2), row_features.transpose(1, 2))   # (A, 256, L)
    # weight_i = alpha_i * prod_{j<i} (1 - alpha_j): alpha_i also dims every later row j of its tile
    spent = grad_weight * weight
    spent_here = spent.sum(dim=-1)
    later = (spent_here + behind)[..., None] - torch.cumsum(spent, dim=-1)
    grad_alpha = grad_weight.mul_(reach).sub_(later.div_(1.0 - alpha))
    # alpha = opacity exp(-sigma) where drawn and not clamped: d alpha / d log(opacity) = alpha = -d alpha / d sigma
    unclamped = torch.sign(F.threshold(ALPHA_MAX - alpha, 0.0, 0.0))
    grid = grad_alpha.mul_(alpha).mul_(unclamped).reshape(-1, TILE, TILE, alpha.shape[-1])
    dx, dy = block.dx, block.dy
    per_column = grid.sum(1)                                                       # (A, 16 x, L)
    per_row = grid.sum(2)                                                          # (A, 16 y, L)
    sum_dx = (per_column * dx).sum(1)                                              # (A, L)
    sum_dy = (per_row * dy).sum(1)
    sum_dxdy = ((grid * dx[:, None]).sum(2) * dy).sum(1)
    # sigma = 0.5 a dx^2 + 0.5 c dy^2 + b dx dy with dx = px - mx, dy = py - my; grid = -d loss / d sigma
    a, b, c = block.shape[:, 2], block.shape[:, 3], block.shape[:, 4]
    grad_rows = torch.stack([a * sum_dx + b * sum_dy, c * sum_dy + b * sum_dx,
                             -0.5 * (per_column * dx * dx).sum(1), -sum_dxdy, -0.5 * (per_row * dy * dy).sum(1),
                             per_row.sum(1)], dim=-1)                              # (A, L, 6)
    grad_shape.index_add_(0, sid, grad_rows.flatten(0, 1))
    return spent_here
