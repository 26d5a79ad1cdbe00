"""pi0-style flow-matching VLA: PaliGemma-style prefix + Gemma action expert.

Architecture (as in pi0 / openpi):
  prefix  = SigLIP tokens of each camera -> linear projector to the LM width, then the prompt
            tokens embedded by the Gemma embedding (scaled by sqrt(width)).
  suffix  = one state token (state_proj) + H action tokens (action_in_proj(x_t) concatenated with a
            sinusoidal time embedding, through a 2-layer SiLU MLP).
  Every layer i: the LM layer i processes the prefix stream and the expert layer i the suffix
  stream, each with its own norms, q/k/v/o and MLP, while attention runs over the concatenated
  sequence. Mask (block-causal, pi0): prefix tokens attend bidirectionally among themselves only;
  the state token sees prefix + itself; action tokens see everything.
Flow matching (pi0 convention): x_t = t * noise + (1 - t) * actions, target u = noise - actions,
t ~ Beta(1.5, 1); sampling integrates dx/dt = v from t=1 to t=0 with Euler steps. The prefix is
encoded once per chunk and its per-layer K/V are reused by every denoising step (the prefix never
attends to the suffix, so this is exact).

Weights live in transformers' SigLIP / Gemma modules so parameter names line up with PaliGemma
and the LeRobot pi0 layout (see lerobot_layout.py); the joint layer loop is our own.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers import GemmaConfig, GemmaModel, SiglipVisionConfig, SiglipVisionModel

from .config import PolicyConfig
from .device import autocast
from .keypoints import KeypointEncoder

BATCH_KEYS = ('images', 'image_masks', 'lang_tokens', 'lang_masks', 'state')
TRAIN_KEYS = ('action',)


def make_att_2d_masks(pad_masks: torch.Tensor, block_starts: torch.Tensor) -> torch.Tensor:
    """pi0 block mask: token i may attend to j iff block(j) <= block(i) and both are real tokens.

    pad_masks (B, L) bool; block_starts (B, L) int, 1 where a new block starts (cumsum = block id).
    Returns (B, L, L) bool."""
    blocks = torch.cumsum(block_starts.to(torch.int64), dim=1)
    att = blocks[:, None, :] <= blocks[:, :, None]
    pad = pad_masks[:, None, :] & pad_masks[:, :, None]
    return att & pad


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    """(B,) times -> (B, dim) [sin | cos] features with periods log-spaced in [min, max] (pi0)."""
    frac = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** frac
    ang = (2 * math.pi / period)[None, :] * t.to(torch.float64)[:, None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).to(torch.float32)


def _rope(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)          # (B, L, head_dim), HF rotate_half layout
    return emb.cos()[:, None], emb.sin()[:, None]    # broadcast over heads


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def _apply_rope(x, cos, sin):
    return (x * cos.to(x.dtype)) + (_rotate_half(x) * sin.to(x.dtype))


def _rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' GemmaRMSNorm (x / rms(x) * (1 + w), in float32) as one fused op: the tiny
    preset's layers are dispatch-bound on a CPU, and the module does ten ops for this."""
    w = norm.weight
    return F.rms_norm(x.float(), w.shape, 1.0 + w.float(), norm.eps).type_as(x)


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' GemmaMLP (gelu-tanh gated) without the per-module call overhead."""
    gate = F.gelu(F.linear(x, mlp.gate_proj.weight), approximate='tanh')
    return F.linear(gate * F.linear(x, mlp.up_proj.weight), mlp.down_proj.weight)


class Pi0Policy(nn.Module):
    """The VLA. Inputs are the tensor batches made by processing.PolicyProcessor:

    images (B, n_cam, 3, S, S) float in [-1, 1]; image_masks (B, n_cam) bool (camera present);
    lang_tokens (B, L) int64; lang_masks (B, L) bool; state (B, max_state_dim) float (normalised,
    zero-padded); for training also action (B, H, max_action_dim) float (normalised, padded),
    action_mask (B, H) bool (real chunk steps) and action_dim_mask (B, max_action_dim) bool
    (real action dims; default: the first config.action_dim).
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        if c.vision_tower == 'keypoints':
            # Conv + spatial-softmax tokens, already at the LM width (no projector).
            self.vision = KeypointEncoder(c, c.lm_width)
            self.projector = nn.Identity()
        else:
            vcfg = SiglipVisionConfig(
                hidden_size=c.vision_width, intermediate_size=c.vision_mlp_dim,
                num_hidden_layers=c.vision_depth, num_attention_heads=c.vision_heads,
                image_size=c.image_size, patch_size=c.vision_patch_size, vision_use_head=False,
                hidden_act='gelu_pytorch_tanh')
            vcfg._attn_implementation = 'sdpa'
            self.vision = SiglipVisionModel(vcfg)
            # PaliGemma's multi_modal_projector.linear
            self.projector = nn.Linear(c.vision_width, c.lm_width)

        def gemma_cfg(width, mlp, vocab):
            g = GemmaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=mlp,
                            num_hidden_layers=c.lm_depth, num_attention_heads=c.num_heads,
                            num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim,
                            hidden_act='gelu_pytorch_tanh', pad_token_id=None,
                            bos_token_id=None, eos_token_id=None)
            g._attn_implementation = 'sdpa'
            return g

        self.lm = GemmaModel(gemma_cfg(c.lm_width, c.lm_mlp_dim, c.vocab_size))
        self.expert = GemmaModel(gemma_cfg(c.expert_width, c.expert_mlp_dim, 1))
        # The expert never embeds tokens; rotary is computed on the fly (no buffers to restore).
        self.expert.embed_tokens = None
        self.lm.rotary_emb = None
        self.expert.rotary_emb = None

        w = c.expert_width
        self.state_proj = nn.Linear(c.max_state_dim, w)
        self.action_in_proj = nn.Linear(c.max_action_dim, w)
        self.action_time_mlp_in = nn.Linear(2 * w, w)
        self.action_time_mlp_out = nn.Linear(w, w)
        self.action_out_proj = nn.Linear(w, c.max_action_dim)
        # Recompute layer activations in backward (saves memory for big presets on GPU).
        self.gradient_checkpointing = False

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def empty(cls, config: PolicyConfig, device: str | torch.device = 'cpu') -> 'Pi0Policy':
        """Build without running weight init (fast for big presets): memory is allocated but
        uninitialised; load a state dict next. Non-persistent buffers are restored here."""
        with torch.device('meta'):
            m = cls(config)
        m.to_empty(device=device)
        m.reset_nonpersistent_buffers()
        return m

    def reset_nonpersistent_buffers(self) -> None:
        """Recompute buffers that are not in the state dict (after meta construction)."""
        known = {('vision.embeddings', 'position_ids'), ('lm.embed_tokens', 'embed_scale')}
        found = {(n, b) for n, m in self.named_modules() for b in m._non_persistent_buffers_set}
        if found - known:
            # A transformers upgrade added state we would leave uninitialised: fail loudly.
            raise RuntimeError(f'unhandled non-persistent buffers {sorted(found - known)}')
        if self.config.vision_tower == 'siglip':
            emb = self.vision.embeddings
            n = emb.position_ids.shape[-1]
            emb.position_ids = torch.arange(n, device=emb.position_ids.device).expand((1, -1))
        et = self.lm.embed_tokens
        if hasattr(et, 'embed_scale'):
            et.embed_scale = torch.tensor(float(self.config.lm_width) ** 0.5, device=et.weight.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ embeddings
    def embed_prefix(self, batch):
        c = self.config
        images, img_masks = batch['images'], batch['image_masks']
        B, n_cam = images.shape[:2]
        x = images.reshape(B * n_cam, *images.shape[2:])
        x = x.to(self.state_proj.weight.dtype)
        if c.vision_tower == 'keypoints':
            feats = self.vision(x)                                  # (B*n_cam, K+1, W_lm)
        else:
            feats = self.vision(pixel_values=x).last_hidden_state  # (B*n_cam, N, Wv)
        img_emb = self.projector(feats).reshape(B, n_cam * feats.shape[1], -1)
        img_pad = img_masks[:, :, None].expand(B, n_cam, feats.shape[1]).reshape(B, -1)
        tok = batch['lang_tokens']
        lang_emb = F.embedding(tok, self.lm.embed_tokens.weight) * math.sqrt(c.lm_width)
        emb = torch.cat([img_emb, lang_emb.to(img_emb.dtype)], dim=1)
        pad = torch.cat([img_pad, batch['lang_masks']], dim=1)
        blocks = torch.zeros_like(pad, dtype=torch.int64)            # one bidirectional block
        return emb, pad, blocks

    def embed_suffix(self, state, x_t, t):
        c = self.config
        B = state.shape[0]
        wdt = self.state_proj.weight.dtype      # inputs follow the weights (fp32 or pure bf16)
        state_emb = self.state_proj(state.to(wdt))[:, None, :]
        time_emb = sinusoidal_time_embedding(t, c.expert_width, c.time_min_period, c.time_max_period)
        act_emb = self.action_in_proj(x_t.to(wdt))
        time_emb = time_emb[:, None, :].expand(B, act_emb.shape[1], -1).to(act_emb.dtype)
        h = self.action_time_mlp_in(torch.cat([act_emb, time_emb], dim=2))
        h = self.action_time_mlp_out(F.silu(h))
        emb = torch.cat([state_emb.to(h.dtype), h], dim=1)
        return (emb, *self._suffix_layout(B, emb.device, emb.shape[1]))

    def _suffix_layout(self, batch_size: int, device, length: int = 0):
        """(pad, block starts) of the suffix tokens: one state token, then the action tokens
        (`length` in all; 0 = 1 + chunk_size)."""
        L = length or 1 + self.config.chunk_size
        pad = torch.ones(batch_size, L, dtype=torch.bool, device=device)
        blocks = torch.zeros(batch_size, L, dtype=torch.int64, device=device)
        blocks[:, 0] = 1     # state block: sees prefix + itself
        blocks[:, 1] = 1     # action block: sees prefix + state + all actions
        return pad, blocks

    # ------------------------------------------------------------------ joint transformer
    def _qkv(self, layer, h):
        c = self.config
        B, L, _ = h.shape
        x = _rms_norm(layer.input_layernorm, h)
        a = layer.self_attn
        q = a.q_proj(x).view(B, L, c.num_heads, c.head_dim).transpose(1, 2)
        k = a.k_proj(x).view(B, L, c.num_kv_heads, c.head_dim).transpose(1, 2)
        v = a.v_proj(x).view(B, L, c.num_kv_heads, c.head_dim).transpose(1, 2)
        return q, k, v

    @staticmethod
    def _post(layer, h, att):
        o = layer.self_attn.o_proj
        h = h + F.linear(att, o.weight, o.bias)
        return h + _mlp(layer.mlp, _rms_norm(layer.post_attention_layernorm, h))

    def _attention_inputs(self, att_mask, positions):
        """(mask broadcast over heads, rotary cos, sin) of the queries, for `_layers`.
        att_mask (B, Lq, Lk) bool over queries (prefix then suffix present here) and keys (cached
        prefix, then the queries); positions (B, Lq)."""
        cos, sin = _rope(positions, self.config.head_dim, self.config.rope_theta)
        return att_mask[:, None, :, :], cos, sin

    def _to_heads(self, kv: torch.Tensor) -> torch.Tensor:
        """K or V (B, kv_heads, L, D) repeated to the query heads (grouped-query attention)."""
        rep = self.config.num_heads // kv.shape[1]
        return kv.repeat_interleave(rep, dim=1) if rep > 1 else kv

    def _layers(self, prefix_h, suffix_h, attention, prefix_kv=None, collect_kv=False):
        """Run all layers. prefix_h / suffix_h: (B, L, W) or None; attention: `_attention_inputs`.
        prefix_kv: per-layer cached prefix (k, v), with kv or query heads. Returns (suffix_out or
        None, per-layer prefix (k, v) list with kv heads, or None)."""
        c = self.config
        mask, cos, sin = attention
        kv_out = [] if collect_kv else None
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i in range(c.lm_depth):
            pkv = prefix_kv[i] if prefix_kv is not None else None
            if ckpt:
                prefix_h, suffix_h, kv = torch.utils.checkpoint.checkpoint(
                    self._layer, i, prefix_h, suffix_h, mask, cos, sin, pkv, use_reentrant=False)
            else:
                prefix_h, suffix_h, kv = self._layer(i, prefix_h, suffix_h, mask, cos, sin, pkv)
            if collect_kv:
                kv_out.append(kv)
        out = _rms_norm(self.expert.norm, suffix_h) if suffix_h is not None else None
        return out, kv_out

    def _layer(self, i, prefix_h, suffix_h, mask, cos, sin, prefix_kv):
        """One joint layer: per-stream norms / q,k,v / o / MLP, attention over all streams."""
        c = self.config
        streams = []
        if prefix_h is not None:
            streams.append((self.lm.layers[i], prefix_h))
        if suffix_h is not None:
            streams.append((self.expert.layers[i], suffix_h))
        qkv = [self._qkv(layer, h) for layer, h in streams]
        q, k, v = qkv[0] if len(qkv) == 1 else [torch.cat(t, dim=2) for t in zip(*qkv)]
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        kv = (k, v)
        k, v = self._to_heads(k), self._to_heads(v)
        if prefix_kv is not None:
            pk, pv = prefix_kv
            k = torch.cat([self._to_heads(pk).to(k.dtype), k], dim=2)
            v = torch.cat([self._to_heads(pv).to(v.dtype), v], dim=2)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        B, _, Lq, _ = att.shape
        att = att.transpose(1, 2).reshape(B, Lq, c.num_heads * c.head_dim)
        last = i == c.lm_depth - 1
        start = 0
        if prefix_h is not None:
            L = prefix_h.shape[1]
            # The last layer's prefix outputs are never used (only its K/V are).
            prefix_h = None if last else self._post(self.lm.layers[i], prefix_h, att[:, :L])
            start = L
        if suffix_h is not None:
            suffix_h = self._post(self.expert.layers[i], suffix_h, att[:, start:])
        return prefix_h, suffix_h, kv

    @staticmethod
    def _self_attend_safe(mask: torch.Tensor) -> torch.Tensor:
        """Let padded query rows attend to themselves so no softmax row is empty (NaN-free);
        real rows are unchanged because a real token always sees itself."""
        eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
        return mask | eye

    # ------------------------------------------------------------------ batch handling
    def _prepare(self, batch: dict, need_action: bool) -> dict:
        c = self.config
        keys = BATCH_KEYS + (TRAIN_KEYS if need_action else ())
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f'policy batch is missing {missing} (has {sorted(batch)})')
        dev = self.device
        out = {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        im = out['images']
        B = im.shape[0]
        n_cam = len(c.camera_names)
        if im.shape[1:] != (n_cam, 3, c.image_size, c.image_size):
            raise ValueError(f'images must be (B, {n_cam}, 3, {c.image_size}, {c.image_size}), got {tuple(im.shape)}')
        if out['image_masks'].shape != (B, n_cam):
            raise ValueError(f'image_masks must be ({B}, {n_cam}), got {tuple(out["image_masks"].shape)}')
        if (out['lang_tokens'].ndim != 2 or out['lang_tokens'].shape[0] != B
                or out['lang_masks'].shape != out['lang_tokens'].shape):
            raise ValueError('lang_tokens / lang_masks must both be (B, L)')
        if out['state'].shape != (B, c.max_state_dim):
            raise ValueError(f'state must be ({B}, {c.max_state_dim}), got {tuple(out["state"].shape)}')
        out['image_masks'] = out['image_masks'].bool()
        out['lang_masks'] = out['lang_masks'].bool()
        out['lang_tokens'] = out['lang_tokens'].long()
        if int(out['lang_tokens'].max()) >= c.vocab_size or int(out['lang_tokens'].min()) < 0:
            raise ValueError(f'lang_tokens out of range for vocab_size {c.vocab_size}')
        out['state'] = out['state'].float()
        if need_action:
            a = out['action']
            if a.shape != (B, c.chunk_size, c.max_action_dim):
                raise ValueError(f'action must be ({B}, {c.chunk_size}, {c.max_action_dim}), got {tuple(a.shape)}')
            out['action'] = a.float()
            if 'action_mask' not in out:
                out['action_mask'] = torch.ones(B, c.chunk_size, dtype=torch.bool, device=dev)
            if 'action_dim_mask' not in out:
                dm = torch.zeros(B, c.max_action_dim, dtype=torch.bool, device=dev)
                dm[:, :c.action_dim] = True
                out['action_dim_mask'] = dm
            if out['action_mask'].shape != (B, c.chunk_size):
                raise ValueError(f'action_mask must be ({B}, {c.chunk_size})')
            if out['action_dim_mask'].shape != (B, c.max_action_dim):
                raise ValueError(f'action_dim_mask must be ({B}, {c.max_action_dim})')
        return out

    # ------------------------------------------------------------------ flow matching
    def sample_time(self, batch_size: int, device=None) -> torch.Tensor:
        """t ~ Beta(alpha, beta) * scale + offset (pi0: Beta(1.5, 1), kept inside (0, 1])."""
        c = self.config
        t = torch.distributions.Beta(c.time_beta_alpha, c.time_beta_beta).sample((batch_size,))
        return (t * c.time_scale + c.time_offset).to(device=device or self.device, dtype=torch.float32)

    def velocity(self, batch: dict, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v_theta(x_t, t | obs) with prefix and suffix in one joint pass (training path)."""
        p_emb, p_pad, p_blk = self.embed_prefix(batch)
        s_emb, s_pad, s_blk = self.embed_suffix(batch['state'], x_t, t)
        pad = torch.cat([p_pad, s_pad], dim=1)
        mask = self._self_attend_safe(make_att_2d_masks(pad, torch.cat([p_blk, s_blk], dim=1)))
        pos = torch.cumsum(pad.to(torch.int64), dim=1) - 1
        out, _ = self._layers(p_emb, s_emb, self._attention_inputs(mask, pos))
        return self.action_out_proj(out[:, -self.config.chunk_size:])

    def compute_loss(self, batch: dict, noise: torch.Tensor | None = None, time: torch.Tensor | None = None,
                     sample_weight: torch.Tensor | None = None, noise_samples: int = 1) -> torch.Tensor:
        """Per-sample flow-matching loss (B,): mean squared error between v_theta and
        u = noise - actions over real chunk steps and real action dims, times sample_weight.

        noise_samples N > 1: each observation is encoded once and its chunk noised N times (own
        noise and time per draw), the loss averaged over the draws — N flow-matching targets for
        about the price of one prefix pass (the prefix never attends to the suffix, so reusing
        its K/V is exact). `noise` / `time` then have N * B rows (draw-major per sample)."""
        c = self.config
        b = self._prepare(batch, need_action=True)
        actions = b['action']
        B = actions.shape[0]
        n = int(noise_samples)
        if n < 1:
            raise ValueError('noise_samples must be >= 1')
        rep = actions.repeat_interleave(n, dim=0) if n > 1 else actions
        if noise is None:
            noise = torch.randn_like(rep)
        if time is None:
            time = self.sample_time(B * n, actions.device)
        noise = noise.to(actions.device, torch.float32)
        time = torch.as_tensor(time, dtype=torch.float32, device=actions.device).reshape(-1)
        if time.numel() == 1:
            time = time.expand(B * n)
        if time.shape != (B * n,):
            raise ValueError(f'time must be a scalar or ({B * n},), got {tuple(time.shape)}')
        te = time[:, None, None]
        x_t = te * noise + (1 - te) * rep
        u_t = noise - rep
        with autocast(actions.device, c.dtype):
            if n == 1:
                v_t = self.velocity(b, x_t, time)
            else:
                kv, p_pad = self.encode_prefix(b)
                kv = [(k.repeat_interleave(n, dim=0), v.repeat_interleave(n, dim=0)) for k, v in kv]
                v_t = self.denoise_step(b['state'].repeat_interleave(n, dim=0), kv,
                                        p_pad.repeat_interleave(n, dim=0), x_t, time)
        err = (v_t.float() - u_t) ** 2
        am = b['action_mask'].bool().repeat_interleave(n, dim=0)
        dm = b['action_dim_mask'].bool().repeat_interleave(n, dim=0)
        m = (am[:, :, None] & dm[:, None, :]).to(err.dtype)
        loss = (err * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1.0)
        if n > 1:
            loss = loss.view(B, n).mean(dim=1)
        if sample_weight is not None:
            w = torch.as_tensor(sample_weight, dtype=loss.dtype, device=loss.device).reshape(-1)
            if w.shape[0] != B:
                raise ValueError(f'sample_weight has {w.shape[0]} entries for a batch of {B}')
            loss = loss * w
        return loss

    # ------------------------------------------------------------------ inference
    def encode_prefix(self, batch: dict):
        """Prefix K/V cache: (list of per-layer (k, v), prefix pad mask (B, Lp))."""
        p_emb, p_pad, p_blk = self.embed_prefix(batch)
        mask = self._self_attend_safe(make_att_2d_masks(p_pad, p_blk))
        pos = torch.cumsum(p_pad.to(torch.int64), dim=1) - 1
        _, kv = self._layers(p_emb, None, self._attention_inputs(mask, pos), collect_kv=True)
        return kv, p_pad

    def _suffix_attention(self, s_pad, s_blk, prefix_pad):
        """`_attention_inputs` of the suffix over the cached prefix (the same for every
        denoising step of a chunk)."""
        B, Ls = s_pad.shape
        m_prefix = prefix_pad[:, None, :].expand(B, Ls, prefix_pad.shape[1])
        mask = torch.cat([m_prefix, make_att_2d_masks(s_pad, s_blk)], dim=2)
        pos = prefix_pad.to(torch.int64).sum(dim=1, keepdim=True) + torch.cumsum(s_pad.to(torch.int64), dim=1) - 1
        return self._attention_inputs(mask, pos)

    def denoise_step(self, state, prefix_kv, prefix_pad, x_t, t, attention=None):
        """Velocity for the suffix only, attending to the cached prefix K/V. `attention`: the
        chunk's `_suffix_attention`, computed here when not given."""
        s_emb, s_pad, s_blk = self.embed_suffix(state, x_t, t)
        if attention is None:
            attention = self._suffix_attention(s_pad, s_blk, prefix_pad)
        out, _ = self._layers(None, s_emb, attention, prefix_kv=prefix_kv)
        return self.action_out_proj(out[:, -self.config.chunk_size:])

    @torch.no_grad()
    def sample_actions(self, batch: dict, num_steps: int | None = None, noise: torch.Tensor | None = None,
                       use_kv_cache: bool = True) -> torch.Tensor:
        """Euler integration from t=1 (noise) to t=0: returns (B, H, max_action_dim) normalised
        actions. The prefix is encoded once and reused for every step (use_kv_cache=False
        recomputes it each step; the result is the same — kept for tests)."""
        c = self.config
        b = self._prepare(batch, need_action=False)
        B = b['state'].shape[0]
        dev = b['state'].device
        n = int(num_steps or c.num_inference_steps)
        if n <= 0:
            raise ValueError('num_steps must be > 0')
        if noise is None:
            noise = c.inference_noise_scale * torch.randn(B, c.chunk_size, c.max_action_dim, device=dev)
        if noise.shape != (B, c.chunk_size, c.max_action_dim):
            raise ValueError(f'noise must be ({B}, {c.chunk_size}, {c.max_action_dim}), got {tuple(noise.shape)}')
        x = noise.to(dev, torch.float32)
        dt = -1.0 / n
        with autocast(dev, c.dtype):
            if use_kv_cache:
                # Everything but the noisy chunk and its time is the same at every step: prefix
                # K/V (repeated to the query heads once), the suffix's mask and rotary angles.
                kv, p_pad = self.encode_prefix(b)
                kv = [(self._to_heads(k), self._to_heads(v)) for k, v in kv]
                attention = self._suffix_attention(*self._suffix_layout(B, dev), p_pad)
            for i in range(n):
                t = torch.full((B,), 1.0 - i / n, device=dev, dtype=torch.float32)
                if use_kv_cache:
                    v = self.denoise_step(b['state'], kv, p_pad, x, t, attention)
                else:
                    v = self.velocity(b, x, t)
                x = x + dt * v.float()
        return x

    # ------------------------------------------------------------------ misc
    def set_trainable(self, freeze_vision_encoder: bool = False, train_expert_only: bool = False) -> list:
        """LeRobot-style fine-tuning switches; returns the parameters left trainable.
        train_expert_only freezes the whole PaliGemma part (vision, projector, LM)."""
        frozen = []
        if freeze_vision_encoder or train_expert_only:
            frozen.append(self.vision)
        if train_expert_only:
            frozen += [self.projector, self.lm]
        for prm in self.parameters():
            prm.requires_grad_(True)
        for m in frozen:
            for prm in m.parameters():
                prm.requires_grad_(False)
        return [prm for prm in self.parameters() if prm.requires_grad]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
