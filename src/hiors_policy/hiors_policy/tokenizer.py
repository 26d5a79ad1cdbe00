"""Prompt tokenizers. No downloads: a built-in byte tokenizer for the small presets, and a
user-provided tokenizer file (tokenizer.json via `tokenizers`, or a sentencepiece *.model when
the `sentencepiece` package is installed) for real pi0 weights."""
from __future__ import annotations

import os

import numpy as np

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
BYTE_OFFSET = 4
BYTE_VOCAB_SIZE = 256 + BYTE_OFFSET


class ByteTokenizer:
    """Deterministic UTF-8 byte tokenizer: id = byte + 4; 0 pad, 1 bos, 2 eos, 3 unk."""

    vocab_size = BYTE_VOCAB_SIZE
    pad_id = PAD_ID
    bos_id = BOS_ID

    def encode(self, text: str) -> list[int]:
        return [b + BYTE_OFFSET for b in text.encode('utf-8')]

    def decode(self, ids) -> str:
        return bytes(int(i) - BYTE_OFFSET for i in ids if int(i) >= BYTE_OFFSET).decode('utf-8', 'replace')


class HFTokenizerFile:
    """A tokenizer.json file loaded with the `tokenizers` package (offline)."""

    def __init__(self, path: str):
        from tokenizers import Tokenizer
        self._tok = Tokenizer.from_file(path)
        self.vocab_size = self._tok.get_vocab_size()
        self.pad_id = self._tok.token_to_id('<pad>') if self._tok.token_to_id('<pad>') is not None else 0
        bos = self._tok.token_to_id('<bos>')
        self.bos_id = bos

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])


class SentencePieceFile:
    """A sentencepiece *.model (the PaliGemma tokenizer) — needs the `sentencepiece` package."""

    def __init__(self, path: str):
        try:
            import sentencepiece as spm
        except ImportError:
            raise RuntimeError(
                f'tokenizer {path!r} is a sentencepiece model but the `sentencepiece` package is not '
                'installed; install it or convert the tokenizer to tokenizer.json') from None
        self._sp = spm.SentencePieceProcessor(model_file=path)
        self.vocab_size = self._sp.get_piece_size()
        self.pad_id = max(self._sp.pad_id(), 0)
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])


def make_tokenizer(spec: str):
    """'byte' -> ByteTokenizer; a path to tokenizer.json or *.model -> that file."""
    if spec == 'byte':
        return ByteTokenizer()
    if not spec:
        raise ValueError('this policy config needs a tokenizer file (config.tokenizer = path to '
                         'tokenizer.json or sentencepiece *.model); nothing can be downloaded')
    if not os.path.isfile(spec):
        raise FileNotFoundError(f'tokenizer file not found: {spec!r}')
    if spec.endswith('.json'):
        return HFTokenizerFile(spec)
    if spec.endswith('.model'):
        return SentencePieceFile(spec)
    raise ValueError(f'unsupported tokenizer file {spec!r} (want tokenizer.json or *.model)')


def tokenize_prompt(tokenizer, prompt: str, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """pi0 prompt format: [bos] + tokens("<prompt>\\n"), truncated / right-padded to max_length.
    Returns (ids int64 (L,), mask bool (L,))."""
    if not isinstance(prompt, str):
        raise TypeError(f'prompt must be str, got {type(prompt).__name__}')
    text = prompt.strip().replace('_', ' ') + '\n'
    ids = tokenizer.encode(text)
    if tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id] + ids
    ids = ids[:max_length]
    out = np.full(max_length, tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros(max_length, dtype=bool)
    out[:len(ids)] = ids
    mask[:len(ids)] = True
    return out, mask
