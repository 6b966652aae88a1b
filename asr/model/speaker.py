"""Speaker adapters: how the encoder is told whose voice to follow (target-speaker recognition).

Each adapter is a residual bottleneck whose hidden units are scaled and shifted by the enrolled
voice's embedding (FiLM, as SpeakerBeam-style target-speaker models condition their encoders).
Its output projection starts at zero, so a new adapter changes nothing until trained, and the
encoder skips the adapters entirely when no one is enrolled.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from asr.config import ModelConfig, SpeakerConfig
from asr.errors import EnrollmentError


class SpeakerAdapter(nn.Module):
    def __init__(self, d_model: int, config: SpeakerConfig):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.down = nn.Linear(d_model, config.adapter_dim)
        self.film = nn.Linear(config.embedding_dim, 2 * config.adapter_dim)
        self.up = nn.Linear(config.adapter_dim, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        # A unit-length d-vector has entries near 1/sqrt(dim); scaled, they are near 1 as the
        # layer's initialisation expects.
        self.embedding_scale = math.sqrt(config.embedding_dim)

    def forward(self, x: Tensor, speaker: Tensor) -> Tensor:
        """x (B, T, d_model); speaker (B, embedding_dim), one enrolled voice per row."""
        scale, shift = self.film(speaker * self.embedding_scale)[:, None, :].chunk(2, dim=-1)
        h = self.down(self.norm(x)) * (1 + scale) + shift
        return x + self.up(F.gelu(h))


def speaker_conditioning(config: ModelConfig) -> SpeakerConfig:
    """The model's speaker adapters' settings; EnrollmentError for a model that has none."""
    if config.encoder.speaker is None:
        raise EnrollmentError("this model has no speaker adapters: it cannot follow an enrolled voice "
                              "(the bundled default model can)")
    return config.encoder.speaker
