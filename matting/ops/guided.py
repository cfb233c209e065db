"""The guided filter (He et al.) and its fast variant: the matte refined by the full-resolution photo."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidParameterError
from .checks import check_alpha, check_image, check_same_geometry, float_param, int_param, work_dtype
from .filters import box_filter


def _check_guided_inputs(guide: Tensor, src: Tensor, g_name: str, s_name: str) -> None:
    check_image(guide, g_name, channels=(1, 3))
    check_alpha(src, s_name)
    check_same_geometry(guide, g_name, src, s_name)


def guided_coefficients(i: Tensor, p: Tensor, r: int, eps: float) -> tuple[Tensor, Tensor]:
    """Box-averaged linear coefficients (mean_a (B, C, H, W), mean_b (B, 1, H, W)) of He et al."""
    c = i.shape[1]
    if c == 1:
        stats = box_filter(torch.cat([i, p, i * p, i * i], dim=1), r)
        m_i, m_p, m_ip, m_ii = stats.split(1, dim=1)
        var = (m_ii - m_i * m_i).clamp_min_(0.0)  # rounding can make it slightly negative
        a = (m_ip - m_i * m_p) / (var + eps)
        b = m_p - a * m_i
    else:
        ir, ig, ib = i.split(1, dim=1)
        stats = box_filter(
            torch.cat([i, p, i * p, ir * ir, ir * ig, ir * ib, ig * ig, ig * ib, ib * ib], dim=1), r
        )
        m_r, m_g, m_b, m_p, m_rp, m_gp, m_bp, m_rr, m_rg, m_rb, m_gg, m_gb, m_bb = stats.split(1, dim=1)
        cov_r = m_rp - m_r * m_p
        cov_g = m_gp - m_g * m_p
        cov_b = m_bp - m_b * m_p
        # Sigma + eps*I (symmetric), inverted in closed form via its adjugate.
        s_rr = m_rr - m_r * m_r + eps
        s_rg = m_rg - m_r * m_g
        s_rb = m_rb - m_r * m_b
        s_gg = m_gg - m_g * m_g + eps
        s_gb = m_gb - m_g * m_b
        s_bb = m_bb - m_b * m_b + eps
        inv_rr = s_gg * s_bb - s_gb * s_gb
        inv_rg = s_gb * s_rb - s_rg * s_bb
        inv_rb = s_rg * s_gb - s_gg * s_rb
        inv_gg = s_rr * s_bb - s_rb * s_rb
        inv_gb = s_rb * s_rg - s_rr * s_gb
        inv_bb = s_rr * s_gg - s_rg * s_rg
        det = s_rr * inv_rr + s_rg * inv_rg + s_rb * inv_rb
        a_r = (inv_rr * cov_r + inv_rg * cov_g + inv_rb * cov_b) / det
        a_g = (inv_rg * cov_r + inv_gg * cov_g + inv_gb * cov_b) / det
        a_b = (inv_rb * cov_r + inv_gb * cov_g + inv_bb * cov_b) / det
        a = torch.cat([a_r, a_g, a_b], dim=1)
        b = m_p - a_r * m_r - a_g * m_g - a_b * m_b
    mean_ab = box_filter(torch.cat([a, b], dim=1), r)
    return mean_ab[:, :c], mean_ab[:, c:]


def _apply_linear(mean_a: Tensor, mean_b: Tensor, guide: Tensor) -> Tensor:
    """q = mean_b + sum_c mean_a_c * guide_c, in mean_a's dtype (guide may be lower precision)."""
    q = torch.addcmul(mean_b, mean_a[:, :1], guide[:, :1])
    for ch in range(1, guide.shape[1]):
        q.addcmul_(mean_a[:, ch : ch + 1], guide[:, ch : ch + 1])
    return q


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """He et al. guided filter of ``src`` (B, 1, H, W) steered by ``guide`` (B, 1 or 3, H, W).

    Grey guide: per-window ``q = a I + b``; colour guide: ``q = a . I + b`` with the 3x3
    covariance (+ eps I) inverted in closed form per pixel. ``radius >= 1`` (window 2r+1),
    ``eps > 0`` (regularisation, in squared intensity units). Computed in float32 (float64 if
    an input is float64), returned in ``src``'s dtype; not clamped (the filter can overshoot
    [0, 1] slightly; fast_guided_filter clamps).

    >>> p = torch.rand(1, 1, 8, 8)
    >>> bool((guided_filter(p, p, 2, 1e-8) - p).abs().max() < 1e-3)
    True
    """
    _check_guided_inputs(guide, src, "guide", "src")
    r = int_param(radius, "radius", minimum=1)
    e = float_param(eps, "eps", minimum=0.0, min_exclusive=True)
    if src.shape[0] == 0:
        return src.new_empty(src.shape)
    wd = work_dtype(guide, src)
    i = guide.to(wd)
    mean_a, mean_b = guided_coefficients(i, src.to(wd), r, e)
    return _apply_linear(mean_a, mean_b, i).to(src.dtype)


def fast_guided_filter(
    guide_lr: Tensor,
    src_lr: Tensor,
    guide_hr: Tensor,
    radius: int,
    eps: float,
    coefficients: Callable[[Tensor, Tensor, int, float], tuple[Tensor, Tensor] | None] | None = None,
) -> Tensor:
    """Fast guided filter (He & Sun 2015): coefficients at low resolution, applied at high.

    ``guide_lr`` (B, 1|3, h, w) is the photo downscaled to the matte's size, ``src_lr``
    (B, 1, h, w) the network matte, ``guide_hr`` (B, same C, H, W) the full-size photo.
    ``radius`` is in low-resolution pixels. mean_a, mean_b are upsampled bilinearly
    (align_corners=False) and the result ``sum_c A_c I_c + b`` is clamped to [0, 1], in
    ``src_lr``'s dtype. guide_hr may be float16 on CUDA; the arithmetic is float32. ``coefficients``: what
    computes them instead of ``guided_coefficients`` when it can (a captured CUDA graph: matting.refine_graphs),
    returning None when it cannot.

    >>> g = torch.rand(1, 3, 16, 16)
    >>> from matting.ops.resize import resize
    >>> fast_guided_filter(resize(g, (8, 8)), torch.rand(1, 1, 8, 8), g, 2, 1e-3).shape
    torch.Size([1, 1, 16, 16])
    """
    _check_guided_inputs(guide_lr, src_lr, "guide_lr", "src_lr")
    check_image(guide_hr, "guide_hr", channels=(1, 3))
    if guide_hr.shape[:2] != guide_lr.shape[:2] or guide_hr.device != guide_lr.device:
        raise InvalidParameterError(
            "guide_hr must match guide_lr in batch size, channels and device: "
            f"got {tuple(guide_hr.shape)} on {guide_hr.device} vs {tuple(guide_lr.shape)} on {guide_lr.device}"
        )
    r = int_param(radius, "radius", minimum=1)
    e = float_param(eps, "eps", minimum=0.0, min_exclusive=True)
    bsz, c = guide_lr.shape[:2]
    out_h, out_w = guide_hr.shape[-2:]
    if bsz == 0:
        return src_lr.new_empty((0, 1, out_h, out_w))
    wd = work_dtype(guide_lr, src_lr, guide_hr)
    guide_lr, src_lr_wd = guide_lr.to(wd), src_lr.to(wd)
    replayed = coefficients(guide_lr, src_lr_wd, r, e) if coefficients is not None else None
    mean_a, mean_b = replayed if replayed is not None else guided_coefficients(guide_lr, src_lr_wd, r, e)
    ab = torch.cat([mean_a, mean_b], dim=1)
    h, w = ab.shape[-2:]
    up = F.interpolate(
        ab.reshape(bsz * (c + 1), 1, h, w), size=(out_h, out_w), mode="bilinear", align_corners=False
    ).view(bsz, c + 1, out_h, out_w)
    q = _apply_linear(up[:, :c], up[:, c:], guide_hr)
    return q.clamp_(0.0, 1.0).to(src_lr.dtype)
