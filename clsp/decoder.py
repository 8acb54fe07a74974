"""The caption decoder: a Hugging Face causal LM that cross-attends over the audio tower's frames.

    frames [B, T, D] (the audio tower's, or the head's projected ones: `DecoderConfig.frames`)
      -> Linear to the LM width -> LayerNorm -> + sinusoidal time positions        = memory [B, T, W]
    <bos> caption <eos> -> causal LM with cross-attention over the memory -> next-token logits [B, L, V]

The bridge gives the LM what encoder-decoder LMs are built to read: encoder states at unit scale per entry
(Whisper, BART and T5 encoders end in a norm; L2-normalised frames have entries ~ 1/sqrt(D)), each with its
place in time, since a pulse's rate and a sweep's direction are a matter of *when*, and frames carry time
only as far as the tower kept it. On the demo corpus (`recipe=demo_caption` at 1000 steps, seed 0; word-F1
of held-out captions against their own clip's references over another clip's) the decoder reads the tower's
frames without positions at 1.51x, the projected frames with positions at 1.52x, the tower's with positions
at 1.55x (rhythm named right in 98 % of clips, against 86 % without positions).

Any transformers causal LM whose forward takes `encoder_hidden_states` works: GPT-2 (built with
`add_cross_attention=True`), BART's decoder (`BartForCausalLM`), BERT or RoBERTa as decoders. T5 has
no stand-alone causal LM in transformers. Captions come from transformers' `generate` (greedy or beam
search, with the KV cache), given the frames as `encoder_hidden_states`.

What keeps host reads (device syncs, see clsp.checks) out of the training forward:
- token ids go in as embeddings: given ids without a mask, transformers reads them on the host to
  warn about padding;
- the self-attention mask is a prepared 4-D causal mask without padding: captions are right-padded,
  so causal attention never lets a real token see padding, and the padded positions' outputs are
  masked out of the loss (CaptioningLoss). Given a 2-D mask or none, transformers reads it (or the
  position ids) on the host to look for padding or packed sequences;
- the frame mask goes in as the prepared 4-D mask the text tower uses.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence

import torch
from torch import nn

from clsp.config import DecoderConfig, portable_hf_config
from clsp.errors import UserError, load_pretrained
from clsp.text import as_attention_mask, prepared_attention_mask
from clsp.tokenizer import Tokens, load_tokenizer


class _FinishedBeamsPadding(logging.Filter):
    """Drops transformers' "passing in an `attention_mask`" warning. `generate` feeds a caption that has
    ended its pad id as the next input while the others go on, and warns on seeing that pad without a mask;
    those positions are never read (the caption ended), so the warning never applies to a clsp caption."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "We strongly recommend passing in an `attention_mask`" not in record.getMessage()


_TRANSFORMERS_LOG = logging.getLogger("transformers.modeling_utils")


def frames_cache():
    """transformers' encoder-decoder KV cache, except that beam search reorders only its self-attention
    half. A clip's beams share their cross-attention keys and values (the frames never change), so
    reordering those, as transformers does, copies [B * beams, heads, T, d] per layer and step for
    nothing (beam-3 captions 1.3x faster without it on the CPU: tools/bench.py caption_generate)."""
    from transformers import DynamicCache, EncoderDecoderCache  # here, so importing clsp.model stays light

    class FramesCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    return FramesCache(DynamicCache(), DynamicCache())


def time_positions(length: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal positions [length, width] of frames 0..length-1 (Whisper's layout: sines, then cosines, over
    timescales 1 to 10000), unit amplitude like the LayerNormed frames they are added to; a zero column if
    `width` is odd. The table of transformers' Whisper (`modeling_whisper.sinusoids`, which the tests compare
    with) is built on the CPU: this one is built on the frames' device, so a step copies nothing to it."""
    half = width // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / max(half - 1, 1))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * rates[None]
    table = torch.cat([angles.sin(), angles.cos(), angles.new_zeros(length, width - 2 * half)], dim=1)
    return table.to(dtype)


# Parameter names of the cross-attention layers (GPT-2/BERT, BART); a frozen LM still trains these.
_CROSS_ATTENTION = ("crossattention", "ln_cross_attn", "encoder_attn")


def prepare_tokenizer(tokenizer):
    """The decoder's tokenizer with a pad token (GPT-2 has none: its <eos> pads) and right padding.

    Padding is never told apart from text by its id (GPT-2's pad is its eos), only by the attention mask.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError("the decoder's tokenizer has neither a pad nor an eos token",
                            "use a tokenizer with an eos token (GPT-2, BART, BERT, RoBERTa, clsp:tiny-bpe)")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _special_ids(tokenizer) -> dict[str, int]:
    """bos/eos/pad ids; BERT-style tokenizers have [CLS]/[SEP] where others have <bos>/<eos>."""
    bos = next((i for i in (tokenizer.bos_token_id, tokenizer.cls_token_id, tokenizer.eos_token_id) if i is not None), None)
    eos = next((i for i in (tokenizer.eos_token_id, tokenizer.sep_token_id) if i is not None), None)
    if bos is None or eos is None:
        raise UserError("the decoder's tokenizer has no start (bos/cls) or end (eos/sep) token",
                        "use GPT-2, BART, BERT, RoBERTa or clsp:tiny-bpe tokenizers")
    return {"bos_token_id": int(bos), "eos_token_id": int(eos), "pad_token_id": int(tokenizer.pad_token_id)}


def tokenize_captions(tokenizer, texts: Sequence[str], max_length: int) -> Tokens:
    """Captions as decoder inputs: <bos> caption <eos>, right-padded, at most `max_length` tokens.

    `tokenizer` is a decoder's (`CaptionDecoder.tokenizer`, through `prepare_tokenizer`); collate can
    call this in data workers. A longer caption keeps its first `max_length` - 1 tokens after <bos>
    and no <eos> (the decoder is never taught to stop where the caption did not end); `Tokens.cut`
    marks it.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if not texts or bad:
        raise ValueError(f"empty or non-string caption(s) at index {bad[:10]}" if bad else "no captions to tokenize")
    special = _special_ids(tokenizer)
    enc = tokenizer(texts, add_special_tokens=False, padding="longest", return_tensors="pt", verbose=False)
    body, lengths = enc["input_ids"].long(), enc["attention_mask"].sum(1)
    n, width = body.shape
    ids = torch.full((n, width + 2), special["pad_token_id"], dtype=torch.long)
    ids[:, 0] = special["bos_token_id"]
    ids[:, 1 : width + 1] = body  # padded with the pad id already
    ids[torch.arange(n), lengths + 1] = special["eos_token_id"]
    mask = torch.arange(width + 2)[None] < (lengths + 2)[:, None]
    return Tokens(ids[:, :max_length], mask[:, :max_length].long(), lengths + 2 > max_length)


def _build_lm(cfg: DecoderConfig, ids: dict[str, int]) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    wiring = {"add_cross_attention": True, "is_decoder": True}
    if cfg.pretrained is not None:
        lm = load_pretrained("model.decoder.pretrained", cfg.pretrained,
                             lambda name: AutoModelForCausalLM.from_pretrained(name, **{**cfg.hf_config, **wiring}))
    else:
        hf = dict(cfg.hf_config)
        model_type = hf.pop("model_type")
        try:  # the tokenizer's special ids, so generation starts, stops and pads with them
            lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **{**hf, **ids, **wiring}))
        except ValueError as exc:
            raise UserError(f"model.decoder.hf_config: {' '.join(str(exc).split())[:200]}",
                            "use a causal LM type with cross-attention (gpt2, bart, bert, roberta)") from exc
    if "encoder_hidden_states" not in inspect.signature(lm.forward).parameters:
        raise UserError(f"the decoder {type(lm).__name__} cannot cross-attend to audio frames (its forward takes "
                        "no encoder_hidden_states)", "use a gpt2, bart, bert or roberta decoder")
    return lm


class CaptionDecoder(nn.Module):
    """A causal LM over caption tokens, cross-attending to projected audio frames [B, T, audio_dim]."""

    def __init__(self, cfg: DecoderConfig, audio_dim: int, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        if tokenizer is None:
            if not (cfg.tokenizer or cfg.pretrained):
                raise UserError("the caption decoder has no tokenizer", "set model.decoder.tokenizer")
            tokenizer = load_tokenizer(cfg.tokenizer or cfg.pretrained, "model.decoder.tokenizer")
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.special_ids = _special_ids(self.tokenizer)
        self.lm = _build_lm(cfg, self.special_ids)
        config = self.lm.config
        self.width = int(config.hidden_size)
        self.bridge = nn.Sequential(nn.Linear(audio_dim, self.width), nn.LayerNorm(self.width))
        if len(self.tokenizer) > config.vocab_size:
            raise UserError(f"the decoder's tokenizer has {len(self.tokenizer)} tokens but its LM only {config.vocab_size}",
                            "use the LM's own tokenizer or raise decoder.hf_config.vocab_size")
        self.max_positions = getattr(config, "max_position_embeddings", None)
        if self.max_positions is not None and cfg.max_length > self.max_positions:
            raise UserError(f"decoder.max_length {cfg.max_length} exceeds the LM's {self.max_positions} positions",
                            "lower decoder.max_length")
        if cfg.gradient_checkpointing:
            enable = getattr(self.lm, "activation_checkpointing_enable", None)  # the transformers 5 name, if any
            (enable or self.lm.gradient_checkpointing_enable)()
        if cfg.freeze:  # the LM's own weights; its cross-attention (new for a pretrained LM) still trains
            for pname, param in self.lm.named_parameters():
                param.requires_grad_(any(part in pname for part in _CROSS_ATTENTION))

    def hf_config_dict(self) -> dict:
        return portable_hf_config(self.lm.config)

    # ------------------------------------------------------------- inputs
    def tokenize(self, texts: Sequence[str]) -> Tokens:
        """Captions as this decoder's inputs (`tokenize_captions` with its tokenizer and max_length)."""
        return tokenize_captions(self.tokenizer, texts, self.cfg.max_length)

    def memory(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [B, T, D] bridged to the LM width with their time positions -> memory [B, T, W] + the prepared
        mask. Padding is zeroed first, so even nan there reaches nothing (and the mask hides it)."""
        mask = frame_mask.bool()
        frames = torch.where(mask[..., None], frames, 0)
        memory = self.bridge(frames)
        return memory + time_positions(memory.shape[1], self.width, memory.device, memory.dtype), \
            prepared_attention_mask(self.lm, mask)

    # ------------------------------------------------------------- training
    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, L, V] for right-padded `input_ids` [B, L] (as `tokenize` makes them):
        position t scores token t + 1. Padded positions give logits the loss masks out."""
        memory, mask = self.memory(frames, frame_mask)
        embeds = self.lm.get_input_embeddings()(input_ids)
        length = input_ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        out = self.lm(inputs_embeds=embeds, attention_mask=as_attention_mask(self.lm, causal[None, None]),
                      encoder_hidden_states=memory, encoder_attention_mask=mask, use_cache=False)
        return out.logits

    # ------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, frames: torch.Tensor, frame_mask: torch.Tensor, *, max_new_tokens: int | None = None,
                 num_beams: int | None = None, use_cache: bool = True, **generate_kwargs) -> torch.Tensor:
        """Caption token ids [B, <= max_new_tokens] (after <bos>; <eos> and padding included) by
        transformers' `generate`: greedy, or beam search for `num_beams` > 1; deterministic unless
        `generate_kwargs` ask for sampling."""
        max_new_tokens = max_new_tokens or self.cfg.max_new_tokens
        if self.max_positions is not None and max_new_tokens + 1 > self.max_positions:
            raise UserError(f"max_new_tokens {max_new_tokens} exceeds the decoder's {self.max_positions - 1} positions",
                            "ask for fewer tokens")
        memory, mask = self.memory(frames, frame_mask)
        start = torch.full((memory.shape[0], 1), self.special_ids["bos_token_id"], dtype=torch.long, device=memory.device)
        options = {"max_new_tokens": max_new_tokens, "num_beams": num_beams or self.cfg.num_beams, "do_sample": False,
                   **self.special_ids, **generate_kwargs}
        if use_cache:
            # BartForCausalLM starts a self-attention-only cache, which breaks its cross-attention at the
            # second token; an explicit encoder-decoder cache works for every decoder.
            name = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
            options.setdefault(name, frames_cache())
        quiet = _FinishedBeamsPadding()  # only around clsp's own generate: other transformers use keeps the warning
        _TRANSFORMERS_LOG.addFilter(quiet)
        try:
            out = self.lm.generate(input_ids=start, attention_mask=torch.ones_like(start), encoder_hidden_states=memory,
                                   encoder_attention_mask=mask, use_cache=use_cache, **options)
        finally:
            _TRANSFORMERS_LOG.removeFilter(quiet)
        return out[:, 1:]

    def caption(self, frames: torch.Tensor, frame_mask: torch.Tensor, **generate_options) -> list[str]:
        """Generated captions as strings (special tokens dropped); options as for `generate`."""
        ids = self.generate(frames, frame_mask, **generate_options)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
