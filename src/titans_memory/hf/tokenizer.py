"""The byte-level tokenizer as a transformers tokenizer (token id = byte value), for tools like lm-eval.

Built with the ``tokenizers`` library: a byte-level pre-tokenizer maps each byte to one printable
character and a vocabulary of those 256 characters (no merges) maps it back to the byte's value.
"""

from __future__ import annotations


def byte_to_char() -> dict[int, str]:
    """The byte-level pre-tokenizer's printable character for each byte value (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):  # the others (controls, space, ...) go to 256, 257, ... in order
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast`` whose ids are the UTF-8 bytes of the text; NUL (0) is eos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = byte_to_char()
    vocab = {chars[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    eos = chars[0]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=eos, clean_up_tokenization_spaces=False,
        model_max_length=1 << 30,
        # eos is the character the byte-level table gives byte 0 ("Ā", U+0100), which real text
        # may hold: never match it in text as the special token (its UTF-8 bytes are 196, 128)
        split_special_tokens=True,
    )
