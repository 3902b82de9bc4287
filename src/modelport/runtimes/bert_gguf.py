"""The conversion of a sentence-transformers BERT folder into a GGUF file llama.cpp embeds with.

The folder is what ``SentenceTransformer.save`` writes for a BERT encoder (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``modules.json`` and the pooling module's
``config.json``). The GGUF file loads in llama.cpp as architecture ``bert``, non-causal, with
the folder's pooling (mean, CLS or last token) built in. It follows what llama.cpp's
``convert_hf_to_gguf.py`` writes for ``BertModel``:

* hyper-parameters: context length, embedding length, feed-forward length, block count, head
  count, layer-norm epsilon, causal attention off, pooling type, token-type count;
* tokenizer ``bert`` (WordPiece) with llama.cpp's "phantom space" vocabulary: a word-initial
  piece gets a leading ``U+2581``, a ``##`` continuation loses its ``##``, control tokens stay
  as they are; the special token ids come from :class:`gguf.SpecialVocab`;
* tensor names from :class:`gguf.TensorNameMap`; the MLM head, the pooler and
  ``position_ids`` are dropped.

What it does not do: the normalisation module of sentence-transformers is not part of the
file (llama.cpp returns the pooled vector as it is, so the caller L2-normalises), and a folder
with a ``Dense`` module is refused, since llama.cpp would silently leave the projection out.
Weights are read with ``safetensors.numpy``; nothing here imports PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from hashlib import sha256
from pathlib import Path
from typing import Any, Final, Literal

import gguf
import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

__all__ = ["WeightType", "convert"]

logger = logging.getLogger(__name__)

WeightType = Literal["f32", "f16"]
"""How the matrices are stored. Norms, biases, position and token-type embeddings stay F32."""

_ARCH: Final = gguf.MODEL_ARCH.BERT
_SUFFIXES: Final = (".weight", ".bias")
_DROPPED: Final = frozenset({"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"})
_DROPPED_PREFIXES: Final = ("cls.predictions", "cls.seq_relationship")
_KEPT_F32: Final = frozenset({gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES})
_FILE_TYPES: Final[Mapping[WeightType, gguf.LlamaFileType]] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
}
_POOLING_KEYS: Final = (
    ("pooling_mode_mean_tokens", gguf.PoolingType.MEAN),
    ("pooling_mode_cls_token", gguf.PoolingType.CLS),
    ("pooling_mode_lasttoken", gguf.PoolingType.LAST),
)
_PHANTOM_SPACE: Final = "\u2581"
# What gguf.SpecialVocab reads by default, less "cls": GGUF has no key for it (llama.cpp
# takes the BOS id, which the tokenizer sets to [CLS], as the classification token).
_SPECIAL_TYPES: Final = ("bos", "eos", "unk", "sep", "pad", "mask")

# The text llama.cpp's convert_hf_to_gguf.py tokenizes to fingerprint a tokenizer's
# pre-tokenisation (``get_vocab_base_pre``), and the fingerprints of the BERT WordPiece
# tokenizers it knows. llama.cpp ignores ``tokenizer.ggml.pre`` for WordPiece vocabularies,
# so an unknown fingerprint is written as "default" rather than refused.
_CHKTXT: Final = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636"
    "\u200d\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \u1780\u17b6\u1793"
    "\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 ?"
    "\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435"
    "\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 '"
    "'''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you su"
    "re? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_KNOWN_PRE: Final[Mapping[str, str]] = {
    "0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f": "bert-bge",
    "8e62295832751ca1e8f92f2226f403dea30dc5165e448b5bfa05af5340c64ec7": "bert-bge-large",
}


def convert(
    model_dir: Path, out_file: Path, *, weight_type: WeightType = "f32", name: str | None = None
) -> None:
    """Write the GGUF form of the sentence-transformers BERT folder ``model_dir`` to ``out_file``.

    The file is written next to ``out_file`` under a temporary name and renamed into place, so
    a reader never sees a partial file. ``name`` goes to ``general.name`` (default: the
    folder's name). Raises ``ValueError`` for a folder that is not a plain BERT encoder with
    mean, CLS or last-token pooling.
    """
    hparams = _read_json(model_dir / "config.json")
    _check_architecture(hparams)
    pooling = _pooling_type(model_dir)
    n_layers = int(hparams["num_hidden_layers"])

    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[_ARCH])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name if name is not None else model_dir.name)
    writer.add_file_type(_FILE_TYPES[weight_type])
    writer.add_block_count(n_layers)
    writer.add_context_length(int(hparams["max_position_embeddings"]))
    writer.add_embedding_length(int(hparams["hidden_size"]))
    writer.add_feed_forward_length(int(hparams["intermediate_size"]))
    writer.add_head_count(int(hparams["num_attention_heads"]))
    writer.add_layer_norm_eps(float(hparams["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling)
    _add_vocab(writer, model_dir, hparams)

    tensor_map = gguf.get_tensor_name_map(_ARCH, n_layers)
    weights = load_file(model_dir / "model.safetensors")
    for gguf_name, array in _gguf_tensors(weights, tensor_map, weight_type):
        writer.add_tensor(gguf_name, array)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name next to the target, created by the writer itself so that the file gets the
    # umask's permissions (tempfile.mkstemp would leave it readable by its owner only).
    tmp = out_file.with_name(f".{out_file.name}.{secrets.token_hex(8)}.tmp")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with tmp.open("rb+") as written:
            os.fsync(written.fileno())
        tmp.replace(out_file)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _check_architecture(hparams: Mapping[str, Any]) -> None:
    if hparams.get("model_type") != "bert":
        raise ValueError(f"model_type is {hparams.get('model_type')!r}, not 'bert'")
    position = hparams.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise ValueError(f"position_embedding_type {position!r} is not supported")


def _pooling_type(model_dir: Path) -> gguf.PoolingType:
    """The pooling of the folder's ``sentence_transformers.models.Pooling`` module."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        raise ValueError(f"{modules_file} is missing: not a sentence-transformers folder")
    with modules_file.open(encoding="utf-8") as f:
        modules: list[dict[str, Any]] = json.load(f)
    pooling_path: str | None = None
    for module in modules:
        kind = str(module["type"])
        if kind == "sentence_transformers.models.Dense":
            raise ValueError("a Dense module follows the pooling; llama.cpp would leave it out")
        if kind == "sentence_transformers.models.Pooling" and pooling_path is None:
            pooling_path = str(module["path"])
    if pooling_path is None:
        raise ValueError("modules.json names no Pooling module")
    pooling = _read_json(model_dir / pooling_path / "config.json")
    for key, pooling_type in _POOLING_KEYS:
        if pooling.get(key):
            return pooling_type
    raise ValueError("only mean, CLS and last-token pooling are supported")


def _add_vocab(writer: gguf.GGUFWriter, model_dir: Path, hparams: Mapping[str, Any]) -> None:
    """The WordPiece vocabulary, as llama.cpp's converter writes it for ``BertModel``."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    vocab_size = int(hparams.get("vocab_size", len(vocab)))
    if max(vocab.values()) >= vocab_size:
        raise ValueError(f"tokenizer has ids beyond vocab_size {vocab_size}")
    by_id = {token_id: token for token, token_id in vocab.items()}
    added = tokenizer.get_added_tokens_decoder()

    tokens: list[str] = []
    token_types: list[int] = []
    for token_id in range(vocab_size):
        token = by_id.get(token_id)
        if token is None:
            tokens.append(f"[PAD{token_id}]")
            token_types.append(gguf.TokenType.UNUSED)
            continue
        added_token = added.get(token_id)
        if added_token is None:
            token_type = gguf.TokenType.NORMAL
        elif added_token.special:
            token_type = gguf.TokenType.CONTROL
        else:
            token_type = gguf.TokenType.USER_DEFINED
        tokens.append(_phantom(token, token_type))
        token_types.append(token_type)

    writer.add_token_type_count(int(hparams.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre(_tokenizer_pre(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    special = gguf.SpecialVocab(model_dir, special_token_types=_SPECIAL_TYPES, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)


def _phantom(token: str, token_type: gguf.TokenType) -> str:
    """llama.cpp's spelling of a WordPiece token: word starts carry the phantom space."""
    if token_type == gguf.TokenType.CONTROL:
        return token
    if token.startswith("##"):
        return token[2:]
    return _PHANTOM_SPACE + token


def _tokenizer_pre(tokenizer: Tokenizer) -> str:
    """The ``tokenizer.ggml.pre`` name, from the fingerprint llama.cpp's converter takes."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    ids = tokenizer.encode(_CHKTXT).ids
    fingerprint = sha256(str(ids).encode()).hexdigest()
    pre = _KNOWN_PRE.get(fingerprint)
    if pre is None:
        logger.warning("unknown BERT tokenizer fingerprint %s; writing 'default'", fingerprint)
        return "default"
    return pre


def _gguf_tensors(
    weights: Mapping[str, npt.NDArray[Any]],
    tensor_map: gguf.TensorNameMap,
    weight_type: WeightType,
) -> Iterator[tuple[str, npt.NDArray[Any]]]:
    """Each kept tensor under its GGUF name, in the type it is stored as."""
    for hf_name, array in weights.items():
        name = hf_name.removeprefix("bert.")
        if name.endswith(".gamma"):
            name = name.removesuffix(".gamma") + ".weight"
        elif name.endswith(".beta"):
            name = name.removesuffix(".beta") + ".bias"
        if name in _DROPPED or name.startswith(_DROPPED_PREFIXES):
            continue
        found = tensor_map.get_type_and_name(name, try_suffixes=_SUFFIXES)
        if found is None:
            raise ValueError(f"tensor {hf_name!r} has no llama.cpp BERT name")
        tensor_type, gguf_name = found
        keep_f32 = (
            weight_type == "f32"
            or array.ndim <= 1
            or not gguf_name.endswith(".weight")
            or tensor_type in _KEPT_F32
        )
        yield gguf_name, array.astype(np.float32 if keep_f32 else np.float16)
