"""A lean forward pass over the weights of a `transformers` GPT-2, for the RL loop.

Why this file exists: PPO on a small GPT runs thousands of forwards of tiny batches, where the cost is
not the matrix multiplies but everything around them (mask builders, cache objects, a GELU written as
seven elementwise ops, dropout modules with p=0). This module reads the SAME parameters of the same
`GPT2Model` (so checkpoints, `save_pretrained` and every HF tool keep working) and computes the same
function with fused ops: `torch.addmm`, `F.layer_norm`, `F.gelu(approximate="tanh")` (= HF's "gelu_new"), and
attention written out as three ops (_attend) or, for one decoded token, `F.scaled_dot_product_attention`.
`tests/core/test_ppo_loop.py` checks it against the HF forward.

Inputs follow the lab's conventions: prompts LEFT-padded, responses RIGHT-padded, attention mask 1 on real
tokens, position ids = (number of real tokens before) so padding never shifts positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supported(model) -> bool:
    """True when `model` (an HF GPT-2 LM or scorer) is a plain GPT-2 this forward reproduces exactly."""
    c = model.config
    return (getattr(c, "model_type", "") == "gpt2" and c.activation_function in ("gelu_new", "gelu_pytorch_tanh")
            and c.scale_attn_weights and not c.scale_attn_by_inverse_layer_idx
            and not getattr(c, "add_cross_attention", False) and not model.training)


def position_ids_of(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) position of each token among the real tokens of its row (padding gets a harmless 0..)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def _split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, D = x.shape                                                    # (B, T, D) -> (B, H, T, D/H)
    return x.view(B, T, n_head, D // n_head).transpose(1, 2)


def _linear(x: torch.Tensor, conv1d) -> torch.Tensor:
    """HF's Conv1D is x @ W + b with W stored (in, out)."""
    shape = x.shape[:-1] + (conv1d.weight.shape[1],)
    return torch.addmm(conv1d.bias, x.reshape(-1, x.shape[-1]), conv1d.weight).view(shape)


def _attention_mask(mask: torch.Tensor | None, T: int, device) -> torch.Tensor:
    """The bool "may attend" mask: (1, 1, T, T) causal, shared by every row, when there is no padding; else
    (B, 1, T, T): causal AND key is real, OR the diagonal (a padding query attends to itself only, so no row of
    the softmax is empty and no NaN can appear anywhere, even in positions nobody reads)."""
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    if mask is None or bool(mask.all()):
        return causal[None, None]
    allowed = causal[None] & mask.bool()[:, None, :]                    # (B, T, T)
    allowed |= torch.eye(T, dtype=torch.bool, device=device)[None]
    return allowed[:, None]                                              # (B, 1, T, T)


def _additive(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """A bool "may attend" mask as the 0 / -inf bias added to the attention scores; built once per forward."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v, written out.          (B, H, Tq, d), (B, H, Tk, d) x 2, (.., Tq, Tk) -> (B, H, Tq, d)

    Why not F.scaled_dot_product_attention: at the lab's lengths (T <= 128, d = 32) the CPU flash kernel tiles for
    long sequences, and with a mask it took twice as long as these three ops, forward and backward
    (8.4 against 4.3 ms at B=128, H=4, 24 queries, 32 keys). On a GPU the fused kernels win (they never
    materialise the scores), so there it stays F.scaled_dot_product_attention with the same bias.
    bias never masks a whole row (the diagonal is allowed)."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
    scores = torch.add(bias, q @ k.transpose(-1, -2), alpha=q.shape[-1] ** -0.5)   # (B, H, Tq, Tk)
    return torch.softmax(scores, dim=-1) @ v


def _qkv(block, x: torch.Tensor, n_head: int, eps: float):
    """ln_1 and the attention's query, key, value projections.          (B, T, D) -> 3 x (B, H, T, D/H)"""
    h = F.layer_norm(x, (x.shape[-1],), block.ln_1.weight, block.ln_1.bias, eps)
    q, k, v = _linear(h, block.attn.c_attn).split(x.shape[-1], dim=2)
    return _split_heads(q, n_head), _split_heads(k, n_head), _split_heads(v, n_head)


def _finish_block(block, x: torch.Tensor, a: torch.Tensor, eps: float) -> torch.Tensor:
    """The rest of a block after attention: x + proj(a), then x + MLP(ln_2(x)).   (B, T, D), (B, H, T, D/H) -> (B, T, D)"""
    B, T, D = x.shape
    x = x + _linear(a.transpose(1, 2).reshape(B, T, D), block.attn.c_proj)
    h = F.layer_norm(x, (D,), block.ln_2.weight, block.ln_2.bias, eps)
    return x + _linear(F.gelu(_linear(h, block.mlp.c_fc), approximate="tanh"), block.mlp.c_proj)


def hidden_states(transformer, input_ids: torch.Tensor, mask: torch.Tensor | None = None,
                  keep_from: int = 0, prefix_len: int = 0) -> torch.Tensor:
    """The final (ln_f) hidden states of a GPT2Model at positions keep_from..T-1.   (B, T) -> (B, T-keep_from, D)

    keep_from > 0 is the RL case: only the positions that predict response tokens are read, so the LAST block
    runs its attention output, MLP and ln_f on those positions only (every block before it must still run on
    all positions: their keys and values are what the kept positions attend to). Same numbers, fewer FLOPs.

    prefix_len > 0 says where rows may share a beginning: a GRPO group is G responses to ONE prompt, a DPO pair is
    chosen and rejected after one prompt. When at most half as many distinct first-prefix_len tokens (ids and
    mask) as rows exist, the prefix positions run once per distinct prefix and their keys and values are handed
    to every row that has it (_hidden_states_shared). Same numbers (a causal model's prefix states depend on the
    prefix only); gradients add up over the rows through the index, as they would over copies."""
    B, T = input_ids.shape
    if 0 < prefix_len < T:
        shared = _shared_prefix(input_ids, mask, prefix_len)
        if shared is not None:
            return _hidden_states_shared(transformer, input_ids, mask, keep_from, prefix_len, *shared)
    n_head, eps = transformer.config.n_head, transformer.config.layer_norm_epsilon
    positions = position_ids_of(mask) if mask is not None else torch.arange(T, device=input_ids.device)[None]
    allowed = _attention_mask(mask, T, input_ids.device)
    x = transformer.wte(input_ids) + transformer.wpe(positions)
    bias = _additive(allowed, x.dtype)                                   # (B or 1, 1, T, T)
    last = len(transformer.h) - 1
    for i, block in enumerate(transformer.h):
        q, k, v = _qkv(block, x, n_head, eps)
        if i == last and keep_from:   # queries keep_from.. only: the rows of the mask that belong to them
            q, x, bias = q[:, :, keep_from:], x[:, keep_from:], bias[:, :, keep_from:]
        x = _finish_block(block, x, _attend(q, k, v, bias), eps)
    return F.layer_norm(x, (x.shape[-1],), transformer.ln_f.weight, transformer.ln_f.bias, eps)


def _shared_prefix(input_ids: torch.Tensor, mask: torch.Tensor | None, prefix_len: int):
    """(first (U,), index (B,)): row first[u] is the first row of distinct prefix u, and row b has prefix index[b];
    None when sharing would not pay (more than B/2 distinct prefixes: PPO's distinct prompts)."""
    B = input_ids.shape[0]
    key = input_ids[:, :prefix_len]
    if mask is not None:
        key = torch.cat([key, mask[:, :prefix_len].to(key.dtype)], 1)               # equal ids AND equal padding
    _, index = torch.unique(key, dim=0, return_inverse=True)                         # (B,) in 0..U-1
    U = int(index.max()) + 1
    if 2 * U > B:
        return None
    rows = torch.arange(B, device=input_ids.device)
    first = torch.full((U,), B, dtype=torch.long, device=input_ids.device).scatter_reduce(0, index, rows, "amin")
    return first, index


def _hidden_states_shared(transformer, input_ids, mask, keep_from: int, P: int, first, index) -> torch.Tensor:
    """hidden_states with the first P positions computed once per distinct prefix (U rows) and the other S = T - P
    positions per row (B rows). Per block: the prefix attends causally within itself; each row's suffix attends
    to its prefix's keys/values (index_select: (U, H, P, d) -> (B, H, P, d)) and causally to its own."""
    B, T = input_ids.shape
    S = T - P
    D, n_head, eps = transformer.config.n_embd, transformer.config.n_head, transformer.config.layer_norm_epsilon
    device = input_ids.device
    positions = position_ids_of(mask) if mask is not None else torch.arange(T, device=device)[None].expand(B, T)
    xp = transformer.wte(input_ids[first, :P]) + transformer.wpe(positions[first, :P])   # (U, P, D)
    xs = transformer.wte(input_ids[:, P:]) + transformer.wpe(positions[:, P:])           # (B, S, D)
    prefix_mask = _attention_mask(None if mask is None else mask[first, :P], P, device)
    causal = torch.ones(S, S, dtype=torch.bool, device=device).tril()
    if mask is None:                                                                     # (1, 1, S, T)
        suffix_mask = torch.cat([torch.ones(S, P, dtype=torch.bool, device=device), causal], 1)[None, None]
    else:
        # every real prefix key, then causal AND real suffix keys, OR the query itself (as _attention_mask)
        real = mask.bool()
        suffix_mask = torch.cat([real[:, None, :P].expand(B, S, P),
                                 (causal[None] & real[:, None, P:]) | torch.eye(S, dtype=torch.bool, device=device)],
                                2)[:, None]                                              # (B, 1, S, T)
    pm, sm = _additive(prefix_mask, xp.dtype), _additive(suffix_mask, xs.dtype)
    last = len(transformer.h) - 1
    for i, block in enumerate(transformer.h):
        qp, kp, vp = _qkv(block, xp, n_head, eps)                                        # (U, H, P, d)
        qs, ks, vs = _qkv(block, xs, n_head, eps)                                        # (B, H, S, d)
        k = torch.cat([kp.index_select(0, index), ks], 2)                                # (B, H, T, d)
        v = torch.cat([vp.index_select(0, index), vs], 2)
        if i == last and keep_from:   # the last block: only the kept queries (see hidden_states)
            p_from, s_from = min(keep_from, P), max(keep_from - P, 0)
            qp, xp, pm = qp[:, :, p_from:], xp[:, p_from:], pm[:, :, p_from:]
            qs, xs, sm = qs[:, :, s_from:], xs[:, s_from:], sm[:, :, s_from:]
        if xp.shape[1]:
            xp = _finish_block(block, xp, _attend(qp, kp, vp, pm), eps)
        xs = _finish_block(block, xs, _attend(qs, k, v, sm), eps)
    x = torch.cat([xp.index_select(0, index), xs], 1)                                    # (B, T - keep_from, D)
    return F.layer_norm(x, (D,), transformer.ln_f.weight, transformer.ln_f.bias, eps)


def lm_logits(lm, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from hidden states (the LM head is tied to the token embedding). (..., D) -> (..., V)"""
    return hidden @ lm.lm_head.weight.t()


def sample(logp: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from the distribution exp(logp), by inverting its CDF.      (B, V) -> (B, 1)

    Why not torch.multinomial: on the CPU it draws V exponentials per row (65k per step at B=64, V=1024), which
    took ~2 ms of a ~10 ms decode step; inverting the CDF needs one uniform per row. The cumulative sum is in
    float64 so that tokens of tiny probability keep their share, and searchsorted(right=True) picks the first
    token whose cumulative mass exceeds u, so a token of probability 0 is never drawn."""
    cdf = logp.double().exp().cumsum(-1)                                                # (B, V)
    u = torch.rand(logp.shape[0], 1, generator=generator, dtype=torch.float64, device=logp.device)
    token = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)                        # (B, 1)
    return token.clamp_(max=logp.shape[-1] - 1)   # u * total rounds to total only with probability ~1e-16


def generate(lm, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int, eos_token_id: int,
             pad_token_id: int, temperature: float = 1.0, generator: torch.Generator | None = None,
             stop_at_eos: bool = True):
    """Sample continuations with a preallocated KV cache; also return the log-probs of the sampled tokens
    under the temperature-scaled policy, so the rollout never recomputes the policy's forward.

    prompt_ids/prompt_mask: (B, P), LEFT-padded. Returns response_ids (B, R), response_mask (B, R) (1 up to
    and including <eos>, 0 after; padding holds pad_token_id), logprobs (B, R) (0 on padding), R <= max_new.
    With stop_at_eos=False every row is generated to full length (the TRL benchmark setting).
    Runs under inference_mode (no autograd bookkeeping at all); the results are cloned out of it so the
    update can use them as ordinary constants.
    """
    with torch.inference_mode():
        out = _generate(lm, prompt_ids, prompt_mask, max_new_tokens, eos_token_id, pad_token_id, temperature,
                        generator, stop_at_eos)
    return tuple(x.clone() for x in out)


def _generate(lm, prompt_ids, prompt_mask, max_new_tokens, eos_token_id, pad_token_id, temperature, generator,
              stop_at_eos):
    t = lm.transformer
    B, P = prompt_ids.shape
    L, H = len(t.h), t.config.n_head
    D = t.config.n_embd
    S = P + max_new_tokens
    eps = t.config.layer_norm_epsilon
    device = prompt_ids.device
    dtype = t.wte.weight.dtype
    keys = torch.empty(L, B, H, S, D // H, dtype=dtype, device=device)   # the KV cache, written in place
    values = torch.empty(L, B, H, S, D // H, dtype=dtype, device=device)
    key_ok = torch.zeros(B, S, dtype=torch.bool, device=device)          # which cache slots are real tokens
    key_ok[:, :P] = prompt_mask.bool()
    position = position_ids_of(prompt_mask)                              # (B, P)
    # prefill: the whole prompt at once, with the padding mask; once per distinct prompt when rows repeat one
    # (a GRPO group, best-of-n's n samples), the cache then filled for every row through the index
    shared = _shared_prefix(prompt_ids, prompt_mask, P)
    first, index = shared if shared is not None else (torch.arange(B, device=device), None)
    allowed = _attention_mask(prompt_mask[first], P, device)
    x = t.wte(prompt_ids[first]) + t.wpe(position[first])               # (U, P, D)
    bias = _additive(allowed, x.dtype)
    for i, block in enumerate(t.h):
        q, k, v = _qkv(block, x, H, eps)
        x = _finish_block(block, x, _attend(q, k, v, bias), eps)
        if index is not None:
            k, v = k.index_select(0, index), v.index_select(0, index)
        keys[i, :, :, :P], values[i, :, :, :P] = k, v
    if index is not None:
        x = x.index_select(0, index)                                     # (B, P, D)
    x = F.layer_norm(x[:, -1:], (D,), t.ln_f.weight, t.ln_f.bias, eps)  # (B, 1, D)
    next_pos = position[:, -1:] + 1                                      # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    tokens = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    masks = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    n = 0
    for step in range(max_new_tokens):
        logp = torch.log_softmax(lm_logits(lm, x[:, 0] / temperature).float(), dim=-1)   # (B, V)
        token = sample(logp, generator)                                                  # (B, 1)
        logprobs[:, step] = logp.gather(1, token)[:, 0].masked_fill(finished, 0.0)
        token = token.masked_fill(finished[:, None], pad_token_id)
        tokens[:, step] = token[:, 0]
        masks[:, step] = (~finished).long()
        finished = finished | (token[:, 0] == eos_token_id)
        n = step + 1
        if step + 1 == max_new_tokens or (stop_at_eos and bool(finished.all())):
            break
        # one decode step: a single new token per row attends to every real slot of the cache
        s = P + step
        key_ok[:, s] = masks[:, step].bool()
        x = t.wte(token) + t.wpe(next_pos)                               # (B, 1, D)
        visible = key_ok[:, None, None, : s + 1]                         # (B, 1, 1, s+1)
        for i, block in enumerate(t.h):
            q, k, v = _qkv(block, x, H, eps)                             # (B, H, 1, d)
            keys[i, :, :, s:s + 1], values[i, :, :, s:s + 1] = k, v
            a = F.scaled_dot_product_attention(q, keys[i, :, :, :s + 1], values[i, :, :, :s + 1], attn_mask=visible)
            x = _finish_block(block, x, a, eps)
        x = F.layer_norm(x, (D,), t.ln_f.weight, t.ln_f.bias, eps)
        next_pos = next_pos + 1
    return tokens[:, :n], masks[:, :n], logprobs[:, :n]
