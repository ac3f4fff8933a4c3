#!/usr/bin/python3
"""Eager PyTorch baseline of rhead's detection run, written in the style of the official code
(nightdessert/Retrieval_Head, retrieval_head_detection.py): a plain decoder, a full prefill of the
prompt, then one greedy decode step at a time with every head's attention row computed explicitly
(as HF's ``output_attentions=True``), and the official step-count retrieval score
(docs/PAPER_NOTES.md, "Retrieval score").

It shares no code with the pipeline: it parses the Hugging Face folder itself (config.json and
safetensors via json + numpy), implements llama / mistral / mixtral (MoE top-k) / qwen2 (q/k/v bias)
with GQA, fp32 or bf16 weights, in torch. Its inputs are the cells of a generate store (schema >= 2):
``prompt_ids``, the answer span, the pipeline's ROUGE-1 recall (the success filter only); the
generated tokens and the argmax captures are the baseline's own.

    /usr/bin/python3 analysis/baselines/eager_reference.py RUN/generate.h5 --out base.h5 \\
        --check RUN/score.h5

``--check`` compares with the pipeline: per cell the generated ids and every argmax position equal
(generate.h5; a position where the baseline's own row is within TIE_TOLERANCE of its maximum is a
near-tie, counted and printed, not a difference), per model the mean [layer, head] scores equal to
1e-9 and the same successful tests (score.h5). Cells whose argmaxes still differ are rerun with the
model in float64: where exact arithmetic takes the pipeline's position, the baseline's own fp32
rounding decided a close call (a random model's flat 4K-token rows had a 7e-4 gap in the baseline's row
and 5e-3 the other way in float64); that is counted and printed, not a difference. Where float64 takes
the baseline's position, it is a difference. Exit status 1 on any difference, 2 on bad input.

Numerics follow HF transformers 4.37: RMSNorm in fp32, q.k^T / sqrt(d) in the compute dtype, softmax
in fp32, RoPE (rotate-half) from fp32 cos/sin. Argmax ties go to the lowest key position (the
pipeline's rule, torch.argmax's documented behaviour); ``--argmax-on-bf16-row`` casts the row first.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import h5py
import numpy as np

try:
    import torch
except ImportError:  # the caller (tests, bench) checks HAVE_TORCH and skips
    torch = None

HAVE_TORCH = torch is not None
MIN_GENERATE_SCHEMA = 2  # prompt_ids appeared in generate.h5 schema 2 (docs/STORE.md)
SCORE_TOLERANCE = 1e-9
# An argmax that differs from the pipeline's is a near-tie, not a difference, when the baseline's own
# row puts the pipeline's position within this much probability of its maximum: two implementations
# that sum in different orders (the pipeline prefills in 512-token calls, this one in blocks of
# --prefill-block) legitimately break such ties differently (fp32 noise is ~1e-7). Near-ties are
# counted and printed; the scores are still compared to SCORE_TOLERANCE.
TIE_TOLERANCE = 1e-5


class InputError(Exception):
    """A model folder, store or option the baseline cannot use; the message names file and key."""


# ------------------------------------------------------------------------------------------------
# safetensors (https://github.com/huggingface/safetensors: 8-byte little-endian header length, JSON
# header {name: {dtype, shape, data_offsets: [begin, end)}} relative to the end of the header, data)

_NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """path -> {name: np.ndarray}; BF16 tensors become float32 arrays (exact: bf16 is fp32's top half)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise InputError(f"{path}: not a safetensors file (shorter than the 8-byte header length)")
        (n_header,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n_header).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: header of {n_header} bytes is not JSON ({e})") from None
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], [int(s) for s in info["shape"]]
        begin, end = info["data_offsets"]
        buf = data[begin:end]
        count = int(np.prod(shape)) if shape else 1
        if dtype == "BF16":
            if len(buf) != 2 * count:
                raise InputError(f"{path}: {name}: {len(buf)} bytes, expected {2 * count} for BF16 {shape}")
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
        elif dtype in _NP_DTYPES:
            arr = np.frombuffer(buf, dtype=np.dtype(_NP_DTYPES[dtype]).newbyteorder("<"))
            if arr.size != count:
                raise InputError(f"{path}: {name}: {arr.size} elements, expected {count} for {dtype} {shape}")
            out[name] = arr.reshape(shape)
        else:
            raise InputError(f"{path}: {name}: dtype {dtype!r}, expected one of BF16, "
                             f"{', '.join(sorted(_NP_DTYPES))}")
    return out


def read_checkpoint(model_dir):
    """model.safetensors, or model-*-of-*.safetensors listed by model.safetensors.index.json."""
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(single):
        return read_safetensors(single)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if not os.path.isfile(index):
        raise InputError(f"{model_dir}: no model.safetensors and no model.safetensors.index.json")
    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for shard in shards:
        out.update(read_safetensors(os.path.join(model_dir, shard)))
    return out


# ------------------------------------------------------------------------------------------------
# config.json (HF names and defaults of transformers 4.37)

FAMILIES = ("llama", "mistral", "mixtral", "qwen2")


class Config:
    def __init__(self, model_dir):
        path = os.path.join(model_dir, "config.json")
        try:
            with open(path) as f:
                c = json.load(f)
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None

        def need(key):
            if key not in c:
                raise InputError(f"{path}: missing key {key!r}")
            return c[key]

        self.model_type = need("model_type")
        if self.model_type not in FAMILIES:
            raise InputError(f"{path}: model_type {self.model_type!r}, expected one of {', '.join(FAMILIES)}")
        self.hidden = int(need("hidden_size"))
        self.ffn = int(need("intermediate_size"))
        self.n_layer = int(need("num_hidden_layers"))
        self.n_head = int(need("num_attention_heads"))
        self.n_kv = int(c.get("num_key_value_heads") or self.n_head)
        self.head_dim = int(c.get("head_dim") or self.hidden // self.n_head)
        self.vocab = int(need("vocab_size"))
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.theta = float(c.get("rope_theta", 10000.0))
        self.tie = bool(c.get("tie_word_embeddings", False))
        self.qkv_bias = self.model_type == "qwen2" or bool(c.get("attention_bias", False))
        self.o_bias = self.model_type == "llama" and bool(c.get("attention_bias", False))
        scaling = c.get("rope_scaling") or {}
        kind = scaling.get("type", scaling.get("rope_type", "default")) if scaling else "default"
        if kind not in ("default", "linear"):
            raise InputError(f"{path}: rope_scaling type {kind!r}: this baseline implements none and linear")
        self.rope_factor = float(scaling.get("factor", 1.0)) if kind == "linear" else 1.0
        # Sliding window: mistral/mixtral when set; qwen2 only with use_sliding_window, from max_window_layers.
        self.window, self.window_first_layer = None, 0
        if self.model_type in ("mistral", "mixtral") and c.get("sliding_window"):
            self.window = int(c["sliding_window"])
        if self.model_type == "qwen2" and c.get("use_sliding_window") and c.get("sliding_window"):
            self.window = int(c["sliding_window"])
            self.window_first_layer = int(c.get("max_window_layers", 0))
        self.n_expert = int(c.get("num_local_experts", 0)) if self.model_type == "mixtral" else 0
        self.n_expert_used = int(c.get("num_experts_per_tok", 2)) if self.n_expert else 0
        if self.n_head % self.n_kv:
            raise InputError(f"{path}: num_attention_heads {self.n_head} is not a multiple of "
                             f"num_key_value_heads {self.n_kv}")


# ------------------------------------------------------------------------------------------------
# The model, HF-style: embed -> L x [RMSNorm -> attention -> residual -> RMSNorm -> MLP/MoE ->
# residual] -> RMSNorm -> lm_head. KV cache: per layer (k, v) [n_kv, T, d] after RoPE.

class EagerModel:
    def __init__(self, model_dir, dtype="float32", prefill_block=1024):
        self.cfg = cfg = Config(model_dir)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}[dtype]
        # Where HF computes in fp32 (norms, RoPE tables, softmax): fp32, or float64 for a float64 model
        # (the arbiter of --check: which side of a close call exact arithmetic takes).
        self.acc = torch.float64 if self.dtype == torch.float64 else torch.float32
        self.prefill_block = prefill_block
        raw = read_checkpoint(model_dir)

        def w(name, shape):
            if name not in raw:
                raise InputError(f"{model_dir}: tensor {name!r} missing from the checkpoint")
            t = raw[name]
            if list(t.shape) != list(shape):
                raise InputError(f"{model_dir}: tensor {name!r} has shape {list(t.shape)}, "
                                 f"expected {list(shape)} from config.json")
            return torch.from_numpy(np.array(t, dtype=np.float32)).to(self.dtype)  # a writable copy (exact in f64)

        D, F, V, d = cfg.hidden, cfg.ffn, cfg.vocab, cfg.head_dim
        qd, kvd = cfg.n_head * d, cfg.n_kv * d
        self.embed = w("model.embed_tokens.weight", (V, D))
        self.norm = w("model.norm.weight", (D,))
        self.lm_head = self.embed if cfg.tie else w("lm_head.weight", (V, D))
        self.layers = []
        for l in range(cfg.n_layer):
            p = f"model.layers.{l}."
            a = p + "self_attn."
            layer = {"attn_norm": w(p + "input_layernorm.weight", (D,)),
                     "mlp_norm": w(p + "post_attention_layernorm.weight", (D,)),
                     "q": w(a + "q_proj.weight", (qd, D)), "k": w(a + "k_proj.weight", (kvd, D)),
                     "v": w(a + "v_proj.weight", (kvd, D)), "o": w(a + "o_proj.weight", (D, qd))}
            if cfg.qkv_bias:
                layer.update(qb=w(a + "q_proj.bias", (qd,)), kb=w(a + "k_proj.bias", (kvd,)),
                             vb=w(a + "v_proj.bias", (kvd,)))
            if cfg.o_bias:
                layer["ob"] = w(a + "o_proj.bias", (D,))
            if cfg.n_expert:
                m = p + "block_sparse_moe."
                layer["router"] = w(m + "gate.weight", (cfg.n_expert, D))
                layer["experts"] = [(w(f"{m}experts.{e}.w1.weight", (F, D)), w(f"{m}experts.{e}.w3.weight", (F, D)),
                                     w(f"{m}experts.{e}.w2.weight", (D, F))) for e in range(cfg.n_expert)]
            else:
                layer.update(gate=w(p + "mlp.gate_proj.weight", (F, D)), up=w(p + "mlp.up_proj.weight", (F, D)),
                             down=w(p + "mlp.down_proj.weight", (D, F)))
            self.layers.append(layer)
        # inv_freq: [d/2] fp32, HF LlamaRotaryEmbedding
        self.inv_freq = 1.0 / (cfg.theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(self.acc) / d))

    def rms_norm(self, x, weight):
        xf = x.to(self.acc)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.cfg.eps)
        return weight * xf.to(x.dtype)

    def rope(self, x, positions):
        # x: [heads, T, d], positions: [T] -> rotated x (HF apply_rotary_pos_emb, rotate_half)
        t = positions.to(self.acc) / self.cfg.rope_factor
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def mlp(self, layer, x):
        if not self.cfg.n_expert:
            return torch.nn.functional.linear(
                torch.nn.functional.silu(torch.nn.functional.linear(x, layer["gate"]))
                * torch.nn.functional.linear(x, layer["up"]), layer["down"])
        # HF MixtralSparseMoeBlock: fp32 softmax over the router, top-k, renormalised, experts summed.
        logits = torch.nn.functional.linear(x, layer["router"])          # [T, E]
        routing = torch.softmax(logits.to(self.acc), dim=-1)
        weights, chosen = torch.topk(routing, self.cfg.n_expert_used, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)  # [T, k]
        out = torch.zeros_like(x)
        for e, (w1, w3, w2) in enumerate(layer["experts"]):
            tokens, slots = torch.where(chosen == e)
            if tokens.numel() == 0:
                continue
            xe = x[tokens]
            ye = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(xe, w1))
                                            * torch.nn.functional.linear(xe, w3), w2)
            out.index_add_(0, tokens, ye * weights[tokens, slots, None])
        return out

    def forward(self, ids, cache, want_rows=False):
        """ids: [T] int64 appended after the cache -> (logits of the last position [V] fp32,
        attention rows [L][H, T_kv] fp32 of the last position when want_rows)."""
        cfg = self.cfg
        T = ids.shape[0]
        t0 = cache[0][0].shape[1] if cache else 0
        positions = torch.arange(t0, t0 + T)
        x = self.embed[ids]  # [T, D]
        rows = []
        d, H, G = cfg.head_dim, cfg.n_head, cfg.n_head // cfg.n_kv
        for l, layer in enumerate(self.layers):
            h = self.rms_norm(x, layer["attn_norm"])
            q = torch.nn.functional.linear(h, layer["q"], layer.get("qb"))
            k = torch.nn.functional.linear(h, layer["k"], layer.get("kb"))
            v = torch.nn.functional.linear(h, layer["v"], layer.get("vb"))
            q = self.rope(q.view(T, H, d).transpose(0, 1), positions)           # [H, T, d]
            k = self.rope(k.view(T, cfg.n_kv, d).transpose(0, 1), positions)    # [n_kv, T, d]
            v = v.view(T, cfg.n_kv, d).transpose(0, 1)
            if len(cache) > l:
                k = torch.cat((cache[l][0], k), dim=1)
                v = torch.cat((cache[l][1], v), dim=1)
                cache[l] = (k, v)
            else:
                cache.append((k, v))
            # GQA: repeat_kv, query head h reads KV head h // G
            keys = k.repeat_interleave(G, dim=0)    # [H, T_kv, d]
            values = v.repeat_interleave(G, dim=0)
            T_kv = keys.shape[1]
            window = cfg.window if (cfg.window and l >= cfg.window_first_layer) else None
            out = torch.empty(H, T, d, dtype=x.dtype)
            # Query rows in blocks so that a 16K prefill does not hold [H, T, T] at once (the official
            # prefill is flash attention, which never does either); each row is the plain eager one.
            for r0 in range(0, T, self.prefill_block):
                r1 = min(T, r0 + self.prefill_block)
                scores = torch.matmul(q[:, r0:r1], keys.transpose(1, 2)) / math.sqrt(d)  # [H, R, T_kv]
                qpos = torch.arange(t0 + r0, t0 + r1).view(-1, 1)
                kpos = torch.arange(T_kv).view(1, -1)
                allowed = kpos <= qpos
                if window:
                    allowed = allowed & (qpos - kpos < window)
                scores = scores.to(self.acc).masked_fill(~allowed, float("-inf"))
                probs = torch.softmax(scores, dim=-1)
                if want_rows and r1 == T:
                    rows.append(probs[:, -1, :])  # [H, T_kv]: this layer's row for the last position
                out[:, r0:r1] = torch.matmul(probs.to(x.dtype), values)
            attn = out.transpose(0, 1).reshape(T, H * d)
            x = x + torch.nn.functional.linear(attn, layer["o"], layer.get("ob"))
            x = x + self.mlp(layer, self.rms_norm(x, layer["mlp_norm"]))
        last = self.rms_norm(x[-1:], self.norm)
        logits = torch.nn.functional.linear(last, self.lm_head).to(torch.float32)[0]
        return logits, rows


def argmax_lowest(row):
    """row: [..., K] -> index of the maximum, ties to the lowest index (torch.argmax is documented to
    return the first maximal index)."""
    return torch.argmax(row, dim=-1)


def detect_cell(model, prompt_ids, max_new_tokens, stop_ids, argmax_on_bf16_row=False, compare_argmax=None):
    """The official loop: prefill prompt[0:T-1], feed prompt[T-1], then per step the attention rows of
    every head, argmax per head, greedy token; stop after a stop token (scored) or max_new_tokens.
    compare_argmax: the pipeline's [S', L, H] captures; where a step's argmax differs, the gap
    row[own argmax] - row[pipeline's position] is recorded (for the near-tie rule of the check).
    -> (generated [S] int, argmax [S, L, H] int32, seconds of prefill, seconds of decoding,
        {(step, layer, head): gap})."""
    ids = torch.as_tensor(np.asarray(prompt_ids, dtype=np.int64))
    cache = []
    t0 = time.perf_counter()
    if ids.shape[0] > 1:
        model.forward(ids[:-1], cache)
    t1 = time.perf_counter()
    inp = ids[-1:]
    generated, argmaxes, gaps = [], [], {}
    for step in range(max_new_tokens):
        logits, rows = model.forward(inp, cache, want_rows=True)
        att = torch.stack(rows)  # [L, H, T_kv] fp32
        if argmax_on_bf16_row:
            att = att.to(torch.bfloat16)
        own = argmax_lowest(att)  # [L, H]
        argmaxes.append(own.to(torch.int32).numpy())
        if compare_argmax is not None and step < len(compare_argmax):
            theirs = torch.as_tensor(compare_argmax[step].astype(np.int64))
            if theirs.shape == own.shape:
                for l, h in torch.nonzero(own != theirs).tolist():
                    pos = int(theirs[l, h])
                    gap = float(att[l, h, own[l, h]] - att[l, h, pos]) if 0 <= pos < att.shape[-1] else math.inf
                    gaps[(step, l, h)] = gap
        tok = int(torch.argmax(logits))
        generated.append(tok)
        if tok in stop_ids:
            break
        inp = torch.tensor([tok], dtype=torch.int64)
    t2 = time.perf_counter()
    L, H = model.cfg.n_layer, model.cfg.n_head
    cap = np.stack(argmaxes).astype(np.int32) if argmaxes else np.zeros((0, L, H), np.int32)
    return generated, cap, t1 - t0, t2 - t1, gaps


def official_step_scores(argmax, generated, prompt_ids, begin, end):
    """argmax [S, L, H], generated [S], prompt_ids [T], answer span [begin, end) -> [L, H] float64:
    sum over steps of [begin <= j < end and prompt_ids[j] == generated[s]] / (end - begin), duplicates
    counted (docs/PAPER_NOTES.md, "Retrieval score", retrieval_calculate)."""
    S, L, H = argmax.shape
    scores = np.zeros((L, H), dtype=np.float64)
    if end <= begin:
        return scores
    prompt = np.asarray(prompt_ids)
    for s in range(S):
        for l in range(L):
            for h in range(H):
                j = int(argmax[s, l, h])
                if begin <= j < end and int(prompt[j]) == int(generated[s]):
                    scores[l, h] += 1.0 / (end - begin)
    return scores


# ------------------------------------------------------------------------------------------------
# Token texts (for the stop rule: stop after a token whose text contains a stop string, as the
# pipeline and the official newline stop). tokenizer.model (SentencePiece protobuf) is preferred over
# tokenizer.json, as the pipeline does.

def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _sentencepiece_pieces(path):
    """ModelProto field 1 (repeated SentencePiece {1: piece, 3: type}) -> [(piece, type)]."""
    with open(path, "rb") as f:
        buf = f.read()
    pieces, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if field == 1:
                msg, j, piece, kind = buf[i:i + n], 0, "", 1
                while j < len(msg):
                    k2, j = _varint(msg, j)
                    f2, w2 = k2 >> 3, k2 & 7
                    if w2 == 2:
                        m, j = _varint(msg, j)
                        if f2 == 1:
                            piece = msg[j:j + m].decode("utf-8", "replace")
                        j += m
                    elif w2 == 0:
                        val, j = _varint(msg, j)
                        if f2 == 3:
                            kind = val
                    elif w2 == 5:
                        j += 4
                    elif w2 == 1:
                        j += 8
                    else:
                        raise InputError(f"{path}: unsupported protobuf wire type {w2}")
                pieces.append((piece, kind))
            i += n
        else:
            raise InputError(f"{path}: unsupported protobuf wire type {wire}")
    return pieces


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _byte_piece(piece):
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    return None


def token_texts(model_dir):
    """-> {id: text} of every token, as decoding that one token (special tokens kept) would give."""
    sp = os.path.join(model_dir, "tokenizer.model")
    if os.path.isfile(sp):
        texts = {}
        for i, (piece, kind) in enumerate(_sentencepiece_pieces(sp)):
            b = _byte_piece(piece) if kind == 6 else None
            texts[i] = b.decode("utf-8", "replace") if b is not None else piece.replace("\u2581", " ")
        return texts
    tj = os.path.join(model_dir, "tokenizer.json")
    if not os.path.isfile(tj):
        raise InputError(f"{model_dir}: no tokenizer.model and no tokenizer.json (needed for the stop rule; "
                         f"or give --stop-ids)")
    with open(tj) as f:
        tok = json.load(f)
    vocab = tok.get("model", {}).get("vocab", {})
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        vocab = {p[0]: i for i, p in enumerate(vocab)}
    byte_level = "ByteLevel" in json.dumps(tok.get("decoder") or {})
    inverse = {c: b for b, c in _bytes_to_unicode().items()}
    texts = {}
    for piece, i in vocab.items():
        if byte_level:
            texts[i] = bytes(inverse.get(c, 32) for c in piece).decode("utf-8", "replace")
        else:
            b = _byte_piece(piece)
            texts[i] = b.decode("utf-8", "replace") if b is not None else piece.replace("\u2581", " ")
    for added in tok.get("added_tokens") or []:
        texts[int(added["id"])] = added["content"]
    return texts


# ------------------------------------------------------------------------------------------------
# The job's settings, from the job text stamped into the store (INI; --set overrides are not in it,
# hence the command-line overrides).

def _ini_value(raw):
    raw = raw.strip()
    for marker in (" #", " ;", "\t#", "\t;"):
        cut = raw.find(marker)
        if cut >= 0 and raw.count('"', 0, cut) % 2 == 0:
            raw = raw[:cut].rstrip()
    return raw


def _ini_string(raw):
    s = raw.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1]
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"'}.get(s[i + 1], "\\" + s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _ini_list(raw):
    items, cur, quoted = [], "", False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [_ini_string(x) for x in items if x.strip()]


def parse_job_text(text):
    """INI text -> {section: {key: [raw values]}} (repeated keys append)."""
    out, section = {}, ""
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and "]" in s:
            section = s[1:s.index("]")].strip()
            continue
        if "=" in s:
            key, value = s.split("=", 1)
            out.setdefault(section, {}).setdefault(key.strip(), []).append(_ini_value(value))
    return out


def job_settings(job_text):
    ini = parse_job_text(job_text)
    gen = ini.get("generate", {})
    settings = {"max_new_tokens": int(gen["max_new_tokens"][-1]) if "max_new_tokens" in gen else 50,
                "stop_strings": [s for v in gen["stop_strings"] for s in _ini_list(v)] if "stop_strings" in gen
                else ["\n"],
                "argmax_on_bf16_row": gen.get("argmax_on_bf16_row", ["false"])[-1].lower() == "true",
                "dtype": {}}
    for section, keys in ini.items():
        if section.startswith("model.") and "dtype" in keys:
            settings["dtype"][section[len("model."):]] = _ini_string(keys["dtype"][-1])
    return settings


# ------------------------------------------------------------------------------------------------
# Stores

def _attr(obj, key, path):
    if key not in obj.attrs:
        raise InputError(f"{path}:{obj.name}: attribute {key!r} missing")
    v = obj.attrs[key]
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape in ((), (1,)):
        v = v.reshape(()).item()
    return v.item() if isinstance(v, np.generic) else v


def read_generate_cells(path):
    """generate.h5 -> (header attrs, {model: path}, [cell dicts sorted by id])."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such generate store")
    with h5py.File(path, "r") as f:
        stage = _attr(f, "stage", path)
        if stage != "generate":
            raise InputError(f"{path}: stage {stage!r}, expected a generate store")
        version = int(_attr(f, "schema_version", path))
        if version < MIN_GENERATE_SCHEMA:
            raise InputError(f"{path}: generate schema_version {version}, expected >= {MIN_GENERATE_SCHEMA} "
                             f"(cells need prompt_ids). Hint: rerun the generate stage with this rhead (--force)")
        header = {"job_text": _attr(f, "job_text", path), "seconds": float(_attr(f, "seconds", path))}
        models = {m: _attr(f["models"][m], "path", path) for m in f["models"]}
        cells = []
        for cid in sorted(f["cells"]):
            g = f["cells"][cid]
            if "prompt_ids" not in g:
                raise InputError(f"{path}:/cells/{cid}: dataset 'prompt_ids' missing")
            cells.append({"id": cid, "model": _attr(g, "model", path),
                          "prompt_ids": g["prompt_ids"][()].astype(np.int64),
                          "begin": int(_attr(g, "needle_begin", path)), "end": int(_attr(g, "needle_end", path)),
                          "rouge": float(_attr(g, "rouge1_recall", path)),
                          "generated_ids": g["generated_ids"][()].astype(np.int64),
                          "capture_argmax": g["capture_argmax"][()].astype(np.int32)})
    return header, models, cells


def run_baseline(generate_h5, threads=None, max_new_tokens=None, stop_strings=None, stop_ids=None,
                 success_threshold=50.0, argmax_on_bf16_row=None, cells_filter=None, model_dir=None,
                 prefill_block=1024, log=print, dtype=None):
    """dtype: compute every model in this dtype instead of the job's (float64: the --check arbiter)."""
    """Reruns every cell of the store -> {"cells": {id: {...}}, "models": {m: {...}}, timings}."""
    if not HAVE_TORCH:
        raise InputError("torch is not importable by this Python; install Debian's python3-torch")
    if threads:
        torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    header, model_paths, cells = read_generate_cells(generate_h5)
    job = job_settings(header["job_text"])
    max_new = max_new_tokens if max_new_tokens is not None else job["max_new_tokens"]
    stops = stop_strings if stop_strings is not None else job["stop_strings"]
    bf16_row = job["argmax_on_bf16_row"] if argmax_on_bf16_row is None else argmax_on_bf16_row
    if cells_filter:
        cells = [c for c in cells if cells_filter(c["id"])]
    result = {"cells": {}, "models": {}, "seconds_load": 0.0, "seconds_prefill": 0.0, "seconds_decode": 0.0,
              "decode_steps": 0, "prefill_tokens": 0}
    t_all = time.perf_counter()
    for name in sorted({c["model"] for c in cells}):
        t_load = time.perf_counter()
        path = model_dir or model_paths[name]
        model = EagerModel(path, dtype=dtype or job["dtype"].get(name, "float32"), prefill_block=prefill_block)
        if stop_ids is not None:
            stop_set = set(stop_ids)
        else:
            stop_set = {i for i, t in token_texts(path).items() if any(s and s in t for s in stops)}
        result["seconds_load"] += time.perf_counter() - t_load
        L, H = model.cfg.n_layer, model.cfg.n_head
        tests, test_cells, n_total = [], [], 0
        for c in (c for c in cells if c["model"] == name):
            gen, cap, tp, td, gaps = detect_cell(model, c["prompt_ids"], max_new, stop_set, bf16_row,
                                                 compare_argmax=c["capture_argmax"])
            result["seconds_prefill"] += tp
            result["seconds_decode"] += td
            result["decode_steps"] += len(gen)
            result["prefill_tokens"] += len(c["prompt_ids"]) - 1
            scores = official_step_scores(cap, gen, c["prompt_ids"], c["begin"], c["end"])
            n_total += 1
            success = c["rouge"] > success_threshold  # the pipeline's ROUGE (the filter only)
            if success:
                tests.append(scores)
                test_cells.append(c["id"])
            result["cells"][c["id"]] = {"model": name, "generated_ids": np.asarray(gen, np.int64),
                                        "capture_argmax": cap, "scores": scores, "success": success,
                                        "argmax_gaps": gaps}
            log(f"eager_reference: {c['id']}: T={len(c['prompt_ids'])}, {len(gen)} steps, "
                f"prefill {tp:.3f}s, decode {td:.3f}s")
        stacked = np.stack(tests) if tests else np.zeros((0, L, H))
        result["models"][name] = {"test_scores": stacked, "test_cells": test_cells, "n_tests_total": n_total,
                                  "mean": stacked.mean(0) if tests else np.zeros((L, H))}
    result["seconds"] = time.perf_counter() - t_all
    result["n_cells"] = len(cells)
    return result


def write_result(path, result, generate_h5):
    with h5py.File(path, "w") as f:
        f.attrs["stage"] = "eager_reference"
        f.attrs["generate_store"] = os.path.abspath(generate_h5)
        for key in ("seconds", "seconds_load", "seconds_prefill", "seconds_decode"):
            f.attrs[key] = float(result[key])
        for key in ("n_cells", "decode_steps", "prefill_tokens"):
            f.attrs[key] = int(result[key])
        for cid, c in result["cells"].items():
            g = f.create_group(f"cells/{cid}")
            g.attrs["model"] = c["model"]
            g.attrs["success"] = int(c["success"])
            g.create_dataset("generated_ids", data=c["generated_ids"].astype(np.int32)).attrs["dims"] = "step"
            g.create_dataset("capture_argmax", data=c["capture_argmax"]).attrs["dims"] = "step,layer,head"
            g.create_dataset("scores", data=c["scores"]).attrs["dims"] = "layer,head"
        for name, m in result["models"].items():
            g = f.create_group(f"models/{name}")
            g.attrs["n_tests_total"] = m["n_tests_total"]
            g.attrs["n_tests_success"] = len(m["test_cells"])
            g.create_dataset("mean", data=m["mean"]).attrs["dims"] = "layer,head"
            g.create_dataset("test_scores", data=m["test_scores"]).attrs["dims"] = "test,layer,head"
            g.create_dataset("test_cells", data=np.array(m["test_cells"], dtype=h5py.string_dtype()))


def argmax_differences(mine, theirs):
    """[(step, layer, head)] where the baseline's argmax differs from the pipeline's beyond a near-tie."""
    a, b = mine["capture_argmax"], theirs["capture_argmax"]
    if a.shape != b.shape or not np.array_equal(mine["generated_ids"], theirs["generated_ids"]):
        return []
    gaps = mine.get("argmax_gaps", {})
    return [tuple(int(i) for i in x) for x in np.argwhere(a != b)
            if not gaps.get(tuple(int(i) for i in x), math.inf) <= TIE_TOLERANCE]


def cells_to_arbitrate(result, generate_h5):
    """Ids of the cells whose argmaxes differ beyond near-ties (rerun in float64 by --check)."""
    _, _, cells = read_generate_cells(generate_h5)
    pipeline = {c["id"]: c for c in cells}
    return sorted(cid for cid, mine in result["cells"].items() if argmax_differences(mine, pipeline[cid]))


def check_against_pipeline(result, generate_h5, score_h5=None, max_report=10, ties=None, float64=None):
    """-> list of difference messages (empty: identical). Cells against generate.h5 (generated ids
    exactly; argmax captures exactly up to near-ties, see TIE_TOLERANCE, counted into ties["n"] and
    ties["cells"]), models against score.h5 (same successful tests, mean to 1e-9).
    float64: run_baseline's result in float64 for (some of) the cells. A difference beyond a near-tie
    where float64 takes the pipeline's position (same generated ids) is the baseline's own fp32 rounding
    deciding a close call the other way, not a difference of the pipeline: counted into ties["fp32"]."""
    problems = []
    if ties is None:
        ties = {}
    ties.setdefault("n", 0)
    ties.setdefault("cells", 0)
    ties.setdefault("fp32", 0)
    exact = (float64 or {}).get("cells", {})
    _, _, cells = read_generate_cells(generate_h5)
    pipeline = {c["id"]: c for c in cells}
    for cid, mine in sorted(result["cells"].items()):
        theirs = pipeline[cid]
        if not np.array_equal(mine["generated_ids"], theirs["generated_ids"]):
            problems.append(f"{cid}: generated ids differ: baseline {mine['generated_ids'].tolist()}, "
                            f"pipeline {theirs['generated_ids'].tolist()}")
            continue
        a, b = mine["capture_argmax"], theirs["capture_argmax"]
        if a.shape != b.shape:
            problems.append(f"{cid}: capture_argmax shape {list(a.shape)} (baseline), {list(b.shape)} (pipeline)")
            continue
        gaps = mine.get("argmax_gaps", {})
        diff = argmax_differences(mine, theirs)
        n_ties = int(np.sum(a != b)) - len(diff)
        ref = exact.get(cid)
        if diff and ref is not None and np.array_equal(ref["generated_ids"], theirs["generated_ids"]):
            settled = [x for x in diff if x[0] < ref["capture_argmax"].shape[0] and ref["capture_argmax"][x] == b[x]]
            ties["fp32"] += len(settled)
            diff = [x for x in diff if x not in settled]
        ties["n"] += n_ties
        ties["cells"] += 1 if n_ties else 0
        if diff:
            s, l, h = diff[0]
            problems.append(f"{cid}: {len(diff)} argmax positions differ (beyond near-ties); first at step {s} "
                            f"layer {l} head {h}: baseline {a[s, l, h]}, pipeline {b[s, l, h]} (baseline row gap "
                            f"{gaps.get((s, l, h), math.inf):.3g})")
    if score_h5 is not None:
        with h5py.File(score_h5, "r") as f:
            for name, m in sorted(result["models"].items()):
                if name not in f["models"]:
                    problems.append(f"{score_h5}: /models/{name} missing")
                    continue
                g = f["models"][name]
                rule = _attr(g, "rule", score_h5)
                if not str(rule).startswith("official"):
                    problems.append(f"{score_h5}:/models/{name}: rule {rule!r}, expected the official step rule")
                theirs_cells = [x.decode() if isinstance(x, bytes) else str(x) for x in g["test_cells"][()]]
                if sorted(theirs_cells) != sorted(m["test_cells"]):
                    problems.append(f"{name}: successful tests differ: baseline {len(m['test_cells'])}, "
                                    f"pipeline {len(theirs_cells)} ({score_h5})")
                    continue
                mean = g["mean"][()]
                if mean.shape != m["mean"].shape:
                    problems.append(f"{name}: mean shape {list(m['mean'].shape)} (baseline), "
                                    f"{list(mean.shape)} (pipeline)")
                    continue
                err = float(np.max(np.abs(mean - m["mean"]))) if mean.size else 0.0
                if err > SCORE_TOLERANCE:
                    l, h = np.unravel_index(int(np.argmax(np.abs(mean - m["mean"]))), mean.shape)
                    problems.append(f"{name}: mean scores differ by up to {err:.3g} (> {SCORE_TOLERANCE}); "
                                    f"head {l}-{h}: baseline {m['mean'][l, h]!r}, pipeline {mean[l, h]!r}")
    if len(problems) > max_report:
        problems = problems[:max_report] + [f"... and {len(problems) - max_report} more"]
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generate_h5", help="generate store (schema >= 2: cells carry prompt_ids)")
    ap.add_argument("--out", help="write the baseline's cells and scores here (HDF5)")
    ap.add_argument("--check", metavar="SCORE_H5", nargs="?", const="", default=None,
                    help="compare with the pipeline: generate.h5 per cell, and SCORE_H5's mean scores if given")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the job's [generate] max_new_tokens")
    ap.add_argument("--stop-string", action="append", default=None, help="default: the job's stop_strings")
    ap.add_argument("--stop-ids", default=None, help="comma-separated stop token ids (instead of stop strings)")
    ap.add_argument("--success-threshold", type=float, default=None,
                    help="ROUGE-1 recall cut; default: score.h5's success_threshold, else 50")
    ap.add_argument("--model-dir", default=None, help="model folder (default: generate.h5 /models/<m>@path)")
    ap.add_argument("--prefill-block", type=int, default=1024, help="query rows per prefill block")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not HAVE_TORCH:
        print("eager_reference: torch is not importable; install Debian's python3-torch", file=sys.stderr)
        return 2
    try:
        threshold = args.success_threshold
        if threshold is None and args.check:
            with h5py.File(args.check, "r") as f:
                first = next(iter(f["models"].values()), None)
                threshold = float(first.attrs["success_threshold"]) if first is not None else 50.0
        result = run_baseline(args.generate_h5, threads=args.threads, max_new_tokens=args.max_new_tokens,
                              stop_strings=args.stop_string,
                              stop_ids=[int(x) for x in args.stop_ids.split(",") if x.strip()]
                              if args.stop_ids is not None else None,
                              success_threshold=50.0 if threshold is None else threshold,
                              model_dir=args.model_dir, prefill_block=args.prefill_block,
                              log=(lambda *_: None) if args.quiet else print)
        if args.out:
            write_result(args.out, result, args.generate_h5)
        steps = max(1, result["decode_steps"])
        print(f"eager_reference: {result['n_cells']} cells in {result['seconds']:.2f} s "
              f"({result['n_cells'] / max(result['seconds'], 1e-9):.3f} cells/s; load {result['seconds_load']:.2f} s, "
              f"prefill {result['seconds_prefill']:.2f} s = {result['prefill_tokens'] / max(result['seconds_prefill'], 1e-9):.0f} tok/s, "
              f"decode {result['seconds_decode']:.2f} s = {steps / max(result['seconds_decode'], 1e-9):.1f} steps/s)")
        if args.check is not None:
            ties = {}
            suspects = set(cells_to_arbitrate(result, args.generate_h5))
            float64 = None
            if suspects:
                print(f"eager_reference: {len(suspects)} cell(s) with argmaxes that differ beyond near-ties; "
                      "rerunning them in float64 to see which side exact arithmetic takes")
                float64 = run_baseline(args.generate_h5, threads=args.threads, max_new_tokens=args.max_new_tokens,
                                       stop_strings=args.stop_string,
                                       stop_ids=[int(x) for x in args.stop_ids.split(",") if x.strip()]
                                       if args.stop_ids is not None else None,
                                       cells_filter=lambda cid: cid in suspects, model_dir=args.model_dir,
                                       prefill_block=args.prefill_block, log=lambda *_: None, dtype="float64")
            problems = check_against_pipeline(result, args.generate_h5, args.check or None, ties=ties,
                                              float64=float64)
            if problems:
                print("eager_reference: DIFFERENT from the pipeline:", file=sys.stderr)
                for p in problems:
                    print("  " + p, file=sys.stderr)
                return 1
            n_tests = sum(len(m["test_cells"]) for m in result["models"].values())
            tie_note = (f"; {ties['n']} near-tie argmax(es) in {ties['cells']} cell(s) broken the other way "
                        f"(gap <= {TIE_TOLERANCE:g} in the baseline's own row)" if ties["n"] else "")
            if ties["fp32"]:
                tie_note += (f"; {ties['fp32']} argmax(es) where the baseline's fp32 rounding decided a close call "
                             "the other way (float64 takes the pipeline's position)")
            print(f"eager_reference: identical to the pipeline: {len(result['cells'])} cells (generated ids, "
                  f"argmax captures)" + (f", mean scores of {len(result['models'])} model(s) over {n_tests} "
                                          f"successful tests to {SCORE_TOLERANCE:g}" if args.check else "")
                  + tie_note)
        return 0
    except (InputError, OSError, KeyError) as e:
        print(f"eager_reference: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
