"""The IQ branch of HeimdallNet: one receiver's capture ``[2, n]`` to an embedding and an onset time.

A 1D EfficientNet-style encoder (issue 17): a strided stem, stages of MBConv blocks (1x1 expansion,
depthwise convolution, squeeze-and-excitation, 1x1 projection, residual where shapes allow), then
two read-outs:

* pooled features (mean and max over time) of the last stage: what was received (waveform, band,
  multipath richness);
* a learned onset detector: a 1x1 convolution over the stage at 1/4 of the sample rate gives one
  logit per time step, and the softmax-weighted mean of the step times is a continuous onset
  (fraction of the capture). Pooling alone is blind to *when* the burst arrived, which is what
  time differences of arrival are made of; a soft argmax keeps it, below one step, and
  differentiable.

The stem reads I, Q and the log power envelope (a 9-sample moving average). With ``crop`` the encoder
reads only a window of that many samples around the energy onset (:func:`crop_start`; the onset is then
reported on the whole capture), and ``stem_stride`` 2 halves every stage's length: both cut the cost
for batch-1 inference, where the encoder over 10 captures of 1,024 samples is what costs. Width 16 is 0.55 M
parameters, 20 about the design's 0.8 M. Captures are scaled to unit RMS first (the received power
is the RSS feature's job), and GroupNorm
with one group normalizes per sample, so a batch of one behaves as in training and an all-zero
(absent) capture gives finite outputs. Shapes::

    enc = IQEncoder(IQEncoderConfig())
    emb, onset = enc(iq)        # iq [B, 2, n] float -> emb [B, out_dim], onset [B] in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: (expansion, kernel, stride, repeats, width multiple of ``width``) per stage, as EfficientNet's stages.
STAGES = ((1, 5, 2, 1, 1.0), (4, 5, 2, 2, 1.5), (4, 5, 2, 2, 2.5), (4, 3, 2, 3, 5.0), (4, 3, 1, 3, 7.0))
#: Samples averaged in the power envelope (odd: centred).
ENVELOPE = 9
#: Stage whose time steps the onset detector reads (after the stem and stage 1: 1/4 of the samples).
ONSET_STAGE = 1


@dataclass(frozen=True)
class IQEncoderConfig:
    """Width of the stem (``width``; the stages are multiples of it), embedding size and SE ratio; ``crop``:
    samples kept around the energy onset (0: the whole capture); ``stem_stride``: the stem's stride."""

    width: int = 16
    out_dim: int = 64
    se_ratio: float = 0.25
    crop: int = 0
    stem_stride: int = 1


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, channels)  # per sample: batch 1 and masked captures behave as in training


class SqueezeExcite(nn.Module):
    """Channel gates from the time-averaged features ([B, C, T] -> [B, C, T])."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, reduced), nn.SiLU(), nn.Linear(reduced, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(-1)).unsqueeze(-1)


class MBConv1d(nn.Module):
    """Inverted residual block: expand, depthwise, squeeze-excite, project (+ input when shapes match)."""

    def __init__(self, c_in: int, c_out: int, *, expansion: int, kernel: int, stride: int, se_ratio: float) -> None:
        super().__init__()
        mid = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv1d(c_in, mid, 1, bias=False), _norm(mid), nn.SiLU()]
        layers += [nn.Conv1d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False),
                   _norm(mid), nn.SiLU(), SqueezeExcite(mid, max(1, int(c_in * se_ratio))),
                   nn.Conv1d(mid, c_out, 1, bias=False), _norm(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _stage(c_in: int, c_out: int, spec: tuple, se_ratio: float) -> nn.Sequential:
    expansion, kernel, stride, repeats, _ = spec
    blocks = [MBConv1d(c_in if i == 0 else c_out, c_out, expansion=expansion, kernel=kernel,
                       stride=stride if i == 0 else 1, se_ratio=se_ratio) for i in range(repeats)]
    return nn.Sequential(*blocks)


def crop_start(envelope: torch.Tensor, crop: int) -> torch.Tensor:
    """[B] int64: where a ``crop``-sample window starts on the capture's energy onset (``envelope`` [B, 1, n]).

    The onset is the first sample whose power envelope reaches half its maximum; the window starts a
    quarter of itself before it (the noise before the burst is the reference the arrival stands out
    from) and stays inside the capture. An all-zero capture starts at 0."""
    env = envelope[:, 0]
    above = (env >= 0.5 * env.amax(-1, keepdim=True)).to(env.dtype)
    first = torch.argmax(above, dim=-1)  # the first maximum: the first sample above the threshold
    return (first - crop // 4).clamp(0, env.shape[-1] - crop)


def window(t: torch.Tensor, start: torch.Tensor, span: int) -> torch.Tensor:
    """``t`` [B, C, n] cut to ``span`` samples from ``start`` [B] on (a gather: exportable)."""
    idx = start.unsqueeze(-1) + torch.arange(span, device=t.device)  # [B, span]
    return torch.gather(t, 2, idx.unsqueeze(1).expand(-1, t.shape[1], -1))


class IQEncoder(nn.Module):
    """One receiver's capture to ``(embedding [B, out_dim], onset [B])`` (see the module docstring)."""

    def __init__(self, config: IQEncoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        # I, Q and the log power envelope: an arrival is a step in the envelope, cheap to give, slow to learn
        self.stem = nn.Sequential(nn.Conv1d(3, w, 7, stride=config.stem_stride, padding=3, bias=False), _norm(w),
                                  nn.SiLU())
        widths = [w] + [max(8, round(w * s[4])) for s in STAGES]
        self.stages = nn.ModuleList(_stage(widths[i], widths[i + 1], s, config.se_ratio) for i, s in enumerate(STAGES))
        self.onset_logit = nn.Conv1d(widths[ONSET_STAGE + 1], 1, 1)
        # normalized features give logits of order 1: a softmax over hundreds of steps stays flat (its mean
        # near the middle) until the weights grow, so a learned log-temperature starts it sharp
        self.onset_log_temp = nn.Parameter(torch.tensor(2.0))
        self.head = nn.Sequential(nn.Linear(2 * widths[-1] + 2, config.out_dim), nn.SiLU(),
                                  nn.Linear(config.out_dim, config.out_dim))

    def forward(self, iq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # unit RMS (eps inside the root: an all-zero, absent, capture keeps finite gradients)
        power = iq.pow(2).sum(1, keepdim=True)
        x = iq / (power.mean(-1, keepdim=True) + 1e-12).sqrt()
        envelope = torch.nn.functional.avg_pool1d(x.pow(2).sum(1, keepdim=True), ENVELOPE, stride=1,
                                                  padding=ENVELOPE // 2, count_include_pad=False)[..., : x.shape[-1]]
        n, start, span = x.shape[-1], None, x.shape[-1]
        if 0 < self.config.crop < n:
            start, span = crop_start(envelope, self.config.crop), self.config.crop
            x, envelope = (window(t, start, span) for t in (x, envelope))
        h = self.stem(torch.cat([x, torch.log(envelope + 1e-3)], dim=1))
        onset = sharp = None
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i == ONSET_STAGE:
                onset, sharp = self._onset(h)
        if start is not None:  # the onset in the window, as a fraction of the whole capture
            onset = (start.to(onset.dtype) + onset * span) / n
        pooled = torch.cat([h.mean(-1), h.amax(-1), onset.unsqueeze(-1), sharp.unsqueeze(-1)], dim=-1)
        return self.head(pooled), onset

    def _onset(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft argmax of the onset logits over time: the onset (fraction of the capture) and how peaked it is."""
        logits = self.onset_logit(h)[:, 0] * self.onset_log_temp.exp()  # [B, T]
        weights = torch.softmax(logits, dim=-1)
        steps = logits.shape[-1]
        times = (torch.arange(steps, device=h.device, dtype=h.dtype) + 0.5) / steps
        return (weights * times).sum(-1), weights.amax(-1)


#: Normalized correlation peak a lag needs to count as a target of the onset loss (``iq_lag_aux``). Higher than
#: ``tdoa_multilateration``'s 0.1: the cross-correlation times a burst below the noise (the 864-sample burst
#: gains ~29 dB), one capture alone cannot (the waveform is unknown). On iq10's val captures the energy onset
#: is within 4 samples of the lag for 71% of those with a peak >= 0.8, 30% at 0.5-0.8, <= 4% below 0.5.
LAG_TARGET_MIN_QUALITY = 0.5


def capture_lags(iq: torch.Tensor, ok: torch.Tensor, reference: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each capture's cross-correlation lag after its sample's ``reference`` capture, in samples (no gradient).

    The estimator of :func:`rflocal_core.iq.tdoa_s` without its upsampling (the correlation magnitude at
    integer lags of zero-padded FFTs, a parabola through the peak): within a fraction of a sample, cheap
    enough to compute on every training batch from the captures themselves (``iq_lag_aux``'s targets).

    Parameters
    ----------
    iq : Tensor [N, S, 2, n]
        Captures (any scale: each is normalized).
    ok : Tensor [N, S] bool
        Captures that count.
    reference : Tensor [N] int64
        Slot of each sample's reference capture.

    Returns
    -------
    lag : Tensor [N, S]
        Arrival minus the reference's arrival, samples (0 where not ``ok``).
    quality : Tensor [N, S]
        Peak of the normalized correlation magnitude in [0, 1] (0 where not ``ok``).
    """
    with torch.no_grad():
        n_s, n = iq.shape[0], iq.shape[-1]
        x = torch.complex(iq[:, :, 0].float(), iq[:, :, 1].float())
        x = x / x.abs().pow(2).sum(-1, keepdim=True).clamp_min(1e-12).sqrt()  # unit energy: quality in [0, 1]
        size = 1 << (2 * n - 1).bit_length()
        spec = torch.fft.fft(x, size)
        ref = spec[torch.arange(n_s), reference]
        corr = torch.fft.ifft(spec * ref.conj().unsqueeze(1)).abs()  # [N, S, size]
        k = corr.argmax(-1)
        y0, y1, y2 = (corr.gather(-1, ((k + d) % size).unsqueeze(-1))[..., 0] for d in (-1, 0, 1))
        denom = y0 - 2 * y1 + y2
        frac = torch.where(denom != 0, 0.5 * (y0 - y2) / torch.where(denom != 0, denom, torch.ones_like(denom)),
                           torch.zeros_like(denom))
        lag = k.float() + frac
        lag = torch.where(lag > size / 2, lag - size, lag)
        okf = ok.float()
        return lag * okf, y1.clamp(max=1.0) * okf
