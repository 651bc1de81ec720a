"""The Transformer blocks of SASRec (``recmodels.sasrec``): causal self-attention and a pre-LN block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recmodels.presets import SASRecConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = linear(self.qkv, x).chunk(3, dim=-1)  # 3 x (B, L, D)
        # (B, H, L, D/H) each
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, D/H)
        return linear(self.out, y.transpose(1, 2).reshape(batch, length, width))  # (B, L, D)


class Block(nn.Module):
    """Pre-LN block: LayerNorm before each sub-layer keeps the stack stable without warm-up tricks."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.attention_norm = nn.LayerNorm(d)
        self.attention = CausalSelfAttention(d, config.num_heads, config.dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_multiplier * d),
            nn.GELU(),
            nn.Linear(config.ffn_multiplier * d, d),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        x = x + self._dropped(self.attention.forward(normed(self.attention_norm, x), attend))
        widen, activation, narrow = self.ffn
        hidden = F.gelu(linear(widen, normed(self.ffn_norm, x)), approximate=activation.approximate)
        return x + self._dropped(linear(narrow, hidden))

    def _dropped(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout.p, self.training)


# The layers' own arithmetic, called without nn.Module's call machinery: about 5 us a call, which was a fifth of a
# one-session forward pass (the serving path). Hooks on these inner layers are therefore not run.
def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


def normed(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
