"""``titans train``, ``titans sample``, ``titans eval``: the command line of :mod:`titans_memory.training`.

The work is done by the training package (``loop.train``, ``sample.stream_tokens``,
``evaluate.context_curve``); these adapters declare the arguments and turn them into calls.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from titans_memory.cli._common import (
    directory_path,
    int_list,
    output_directory,
    parse_override,
    positive_int,
)

TRAIN_HELP = "train a Titans language model (bytes of Python's stdlib by default)"
SAMPLE_HELP = "continue a prompt with a trained model, streaming the tokens"
EVAL_HELP = "held-out bits per byte of a checkpoint at several context lengths"


# --- titans train ---------------------------------------------------------------------------------


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="a JSON file of TrainConfig fields")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="override a TrainConfig field, e.g. --set arch=mag --set steps=500 (repeatable)",
    )
    parser.add_argument(
        "--out", type=directory_path, default=Path("runs/titans"), metavar="DIR",
        help="run folder: log.jsonl, train_config.json, checkpoints/ (default: runs/titans)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--quiet", action="store_true", help="no config print-out, no progress bar")


def run_train(args: argparse.Namespace) -> int:
    """``titans train``: the config (file, then ``--set`` overrides), then ``training.loop.train``."""
    from titans_memory.training.config import TrainConfig
    from titans_memory.training.loop import train
    from titans_memory.validate import check_output_path

    check_output_path(args.out, "--out")  # a path the run could not write is refused at start
    config = TrainConfig.from_file(args.config) if args.config is not None else TrainConfig()
    overrides = dict(parse_override(text, TrainConfig) for text in args.set)
    config = config.replace(**overrides)  # validated again: a bad value names its field
    run_dir = output_directory(args.out)
    result = train(config, run_dir, resume=args.resume, progress=not args.quiet)
    if result.final is not None and not args.quiet and distributed_rank() == 0:
        print(f"titans train: {result.step} steps in {result.seconds:.1f} s; held-out "
              f"{result.final.bits_per_byte:.4f} bits/byte; checkpoints in {run_dir / 'checkpoints'}")
    return 0


def distributed_rank() -> int:
    """This process' rank under torchrun (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


# --- titans sample --------------------------------------------------------------------------------


def configure_sample(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=directory_path, required=True, metavar="DIR",
                        help="a checkpoint folder, or a run folder (its best checkpoint)")
    parser.add_argument("--prompt", default="", help="text to continue (default: a new document)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: keep mass p")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads on CPU")


def run_sample(args: argparse.Namespace) -> int:
    """Print ``args.prompt`` and its continuation, token by token."""
    import codecs

    import torch

    from titans_memory.training.checkpoint import load_model
    from titans_memory.training.data import ByteTokenizer
    from titans_memory.training.sample import check_sampling, stream_tokens, tokenizer_for
    from titans_memory.validate import resolve_device

    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, folder, tok_name = load_model(args.checkpoint, device=device)
    tokenizer = tokenizer_for(folder, tok_name)
    prompt = [int(t) for t in tokenizer.encode(args.prompt)] or [tokenizer.separator]
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    if isinstance(tokenizer, ByteTokenizer):  # bytes: print each character once its bytes are in
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in stream_tokens(model, prompt, args.max_new_tokens, temperature=args.temperature,
                                   top_k=args.top_k, top_p=args.top_p, generator=generator):
            out.write(decoder.decode(bytes([token])))
            out.flush()
        out.write(decoder.decode(b"", final=True))
    else:  # a tokenizer: decode what came so far and print what is new
        ids: list[int] = []
        shown = ""
        for token in stream_tokens(model, prompt, args.max_new_tokens, temperature=args.temperature,
                                   top_k=args.top_k, top_p=args.top_p, generator=generator):
            ids.append(token)
            text = tokenizer.decode(ids)
            if not text.endswith("\ufffd"):  # wait for the rest of a character
                out.write(text[len(shown) :])
                shown = text
                out.flush()
        out.write(tokenizer.decode(ids)[len(shown) :])
    out.write("\n")
    out.flush()
    return 0


# --- titans eval ----------------------------------------------------------------------------------


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=directory_path, required=True, metavar="DIR",
                        help="a checkpoint folder, or a run folder (its best checkpoint)")
    parser.add_argument("--contexts", type=int_list, default=[128, 512, 2048, 8192], metavar="N,N,...",
                        help="context lengths (default: 128,512,2048,8192)")
    parser.add_argument("--tokens", type=positive_int, default=32768,
                        help="held-out tokens scored at every context length (default: 32768)")
    parser.add_argument("--data", default=None, help="data to score (default: the checkpoint's own held-out set)")
    parser.add_argument("--batch", type=positive_int, default=8, help="windows per forward call")
    parser.add_argument("--piece", type=positive_int, default=1024, help="tokens per forward call")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads on CPU")


def run_eval(args: argparse.Namespace) -> int:
    """``titans eval``: held-out bits per byte of a checkpoint at several context lengths."""
    import math
    from dataclasses import asdict

    import torch

    from titans_memory.fileio import atomic_write_text, json_text
    from titans_memory.training.checkpoint import load_model
    from titans_memory.training.data import held_out_tokens, open_corpus, train_token_counts
    from titans_memory.training.evaluate import (
        checkpoint_data,
        context_curve,
        unigram_bits_per_byte,
    )
    from titans_memory.training.sample import tokenizer_for
    from titans_memory.validate import check_output_path, resolve_device

    contexts = sorted(set(args.contexts))
    if any(c < 1 for c in contexts):
        raise ValueError(f"--contexts must be integers >= 1, got {args.contexts}")
    step = math.lcm(*contexts)  # every context cuts the same tokens into whole windows
    if step > args.tokens:
        raise ValueError(f"--tokens ({args.tokens}) must be at least the least common multiple of --contexts ({step})")
    if args.out is not None:  # before the work, not after it
        check_output_path(args.out, "--out", is_file=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, folder, tok_name = load_model(args.checkpoint, device=device)
    tokenizer = tokenizer_for(folder, tok_name)
    data, held_out_fraction = checkpoint_data(folder, args.data)
    corpus = open_corpus(data, held_out_fraction)
    tokens = held_out_tokens(corpus, tokenizer, args.tokens // step * step + 1)
    n = (len(tokens) - 1) // step * step
    if n < step:
        raise ValueError(f"the held-out text of {data!r} has {len(tokens)} tokens, fewer than {step + 1}")
    tokens = tokens[: n + 1]
    results = context_curve(model, tokens, contexts, byte_count=tokenizer.byte_count, batch=args.batch, piece=args.piece)
    unigram = unigram_bits_per_byte(train_token_counts(corpus, tokenizer), tokens, contexts[0], tokenizer.byte_count)
    report = {
        "checkpoint": str(folder),
        "data": data,
        "arch": model.config.arch,
        "unigram_bits_per_byte": unigram,
        "results": [asdict(r) for r in results],
    }
    if args.json:
        print(json_text(report))
    else:
        print(f"checkpoint {folder}  ({model.config.arch}, data {data})")
        print(f"{'context':>8} {'tokens':>8} {'loss':>8} {'bits/byte':>10}")
        for r in results:
            print(f"{r.context:>8} {r.tokens:>8} {r.loss:>8.4f} {r.bits_per_byte:>10.4f}")
        print(f"unigram baseline (train-split byte frequencies): {unigram:.4f} bits/byte")
    if args.out is not None:
        atomic_write_text(Path(args.out), json_text(report) + "\n", what="evaluation")
    sys.stdout.flush()
    return 0
