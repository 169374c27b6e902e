"""A lean forward pass over the weights of a `transformers` GPT-2, for the RL loop.

Why this file exists: PPO on a small GPT runs thousands of forwards of tiny batches, where the cost is
not the matrix multiplies but everything around them (mask builders, cache objects, a GELU written as
seven elementwise ops, dropout modules with p=0). This module reads the SAME parameters of the same
`GPT2Model` (so checkpoints, `save_pretrained` and every HF tool keep working) and computes the same
function with fused ops: `torch.addmm`, `F.layer_norm`, `F.gelu(approximate="tanh")` (= HF's "gelu_new"),
`F.scaled_dot_product_attention`. `tests/test_ppo_loop.py` checks it against the HF forward.

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


def _attention_mask(mask: torch.Tensor | None, T: int):
    """None (pure causal, the fast path) when there is no padding, else a (B, 1, T, T) bool mask:
    causal AND key is real, OR the diagonal (a padding query attends to itself only, so no row of the
    softmax is empty and no NaN can appear anywhere, even in positions nobody reads)."""
    if mask is None or bool(mask.all()):
        return None
    causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
    allowed = causal[None] & mask.bool()[:, None, :]                    # (B, T, T)
    allowed |= torch.eye(T, dtype=torch.bool, device=mask.device)[None]
    return allowed[:, None]                                              # (B, 1, T, T)


def hidden_states(transformer, input_ids: torch.Tensor, mask: torch.Tensor | None = None,
                  keep_from: int = 0) -> torch.Tensor:
    """The final (ln_f) hidden states of a GPT2Model at positions keep_from..T-1.   (B, T) -> (B, T-keep_from, D)

    keep_from > 0 is the RL case: only the positions that predict response tokens are read, so the LAST block
    runs its attention output, MLP and ln_f on those positions only (every block before it must still run on
    all positions: their keys and values are what the kept positions attend to). Same numbers, fewer FLOPs."""
    B, T = input_ids.shape
    n_head, eps = transformer.config.n_head, transformer.config.layer_norm_epsilon
    positions = position_ids_of(mask) if mask is not None else torch.arange(T, device=input_ids.device)[None]
    attn_mask = _attention_mask(mask, T)
    x = transformer.wte(input_ids) + transformer.wpe(positions)
    last = len(transformer.h) - 1
    for i, block in enumerate(transformer.h):
        h = F.layer_norm(x, (x.shape[-1],), block.ln_1.weight, block.ln_1.bias, eps)
        q, k, v = _linear(h, block.attn.c_attn).split(x.shape[-1], dim=2)
        q, k, v = _split_heads(q, n_head), _split_heads(k, n_head), _split_heads(v, n_head)
        if i == last and keep_from:
            # queries keep_from.. only; causal alignment is explicit because q and k lengths now differ
            if attn_mask is None:
                sub_mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()[keep_from:]
            else:
                sub_mask = attn_mask[:, :, keep_from:]
            q, x = q[:, :, keep_from:], x[:, keep_from:]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=sub_mask)
        elif attn_mask is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + _linear(a.transpose(1, 2).reshape(B, q.shape[2], -1), block.attn.c_proj)
        h = F.layer_norm(x, (x.shape[-1],), block.ln_2.weight, block.ln_2.bias, eps)
        x = x + _linear(F.gelu(_linear(h, block.mlp.c_fc), approximate="tanh"), block.mlp.c_proj)
    return F.layer_norm(x, (x.shape[-1],), transformer.ln_f.weight, transformer.ln_f.bias, eps)


def lm_logits(lm, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from hidden states (the LM head is tied to the token embedding). (..., D) -> (..., V)"""
    return hidden @ lm.lm_head.weight.t()


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
    # prefill: the whole prompt at once, with the padding mask
    attn_mask = _attention_mask(prompt_mask, P)
    x = t.wte(prompt_ids) + t.wpe(position)
    for i, block in enumerate(t.h):
        h = F.layer_norm(x, (D,), block.ln_1.weight, block.ln_1.bias, eps)
        q, k, v = _linear(h, block.attn.c_attn).split(D, dim=2)
        q, k, v = _split_heads(q, H), _split_heads(k, H), _split_heads(v, H)
        keys[i, :, :, :P], values[i, :, :, :P] = k, v
        a = (F.scaled_dot_product_attention(q, k, v, is_causal=True) if attn_mask is None
             else F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))
        x = x + _linear(a.transpose(1, 2).reshape(B, P, D), block.attn.c_proj)
        h = F.layer_norm(x, (D,), block.ln_2.weight, block.ln_2.bias, eps)
        x = x + _linear(F.gelu(_linear(h, block.mlp.c_fc), approximate="tanh"), block.mlp.c_proj)
    x = F.layer_norm(x[:, -1:], (D,), t.ln_f.weight, t.ln_f.bias, eps)  # (B, 1, D)
    next_pos = position[:, -1:] + 1                                      # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    tokens = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    masks = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    n = 0
    for step in range(max_new_tokens):
        logp = torch.log_softmax(lm_logits(lm, x[:, 0] / temperature).float(), dim=-1)   # (B, V)
        token = torch.multinomial(logp.exp(), 1, generator=generator)                    # (B, 1)
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
            h = F.layer_norm(x, (D,), block.ln_1.weight, block.ln_1.bias, eps)
            q, k, v = _linear(h, block.attn.c_attn).split(D, dim=2)
            keys[i, :, :, s:s + 1], values[i, :, :, s:s + 1] = _split_heads(k, H), _split_heads(v, H)
            a = F.scaled_dot_product_attention(_split_heads(q, H), keys[i, :, :, :s + 1],
                                               values[i, :, :, :s + 1], attn_mask=visible)
            x = x + _linear(a.transpose(1, 2).reshape(B, 1, D), block.attn.c_proj)
            h = F.layer_norm(x, (D,), block.ln_2.weight, block.ln_2.bias, eps)
            x = x + _linear(F.gelu(_linear(h, block.mlp.c_fc), approximate="tanh"), block.mlp.c_proj)
        x = F.layer_norm(x, (D,), t.ln_f.weight, t.ln_f.bias, eps)
        next_pos = next_pos + 1
    return tokens[:, :n], masks[:, :n], logprobs[:, :n]
