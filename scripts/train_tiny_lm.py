"""Train the small GPT-2-style causal LM that ships inside mri_lens.

The model is trained on text every Python installation carries: the source files (code, comments and
docstrings) of the standard library's top-level modules. Everything is seeded and runs on the CPU with a fixed
thread count, so the same Python version + torch version reproduce the same weights.

Usage::

    python scripts/train_tiny_lm.py --out mri_lens/model/bundled/tiny_lm [--steps 700]

Writes a Hugging Face directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) and a
``training.json`` with the data, steps and held-out loss, which the model card (MODEL_CARD.md) quotes.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import sys
import sysconfig
import time

import torch

EOT = "<|endoftext|>"


def stdlib_files() -> list[str]:
    """Top-level standard-library modules, sorted by name so the order never depends on the file system."""
    root = sysconfig.get_paths()["stdlib"]
    return sorted(glob.glob(os.path.join(root, "*.py")), key=os.path.basename)


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def split_files(files: list[str], every: int = 10) -> tuple[list[str], list[str]]:
    """Every ``every``-th file (by name) is held out for the evaluation loss."""
    held = [f for i, f in enumerate(files) if i % every == every - 1]
    train = [f for i, f in enumerate(files) if i % every != every - 1]
    return train, held


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def encode_files(tok, texts: list[str]) -> torch.Tensor:
    """Concatenate documents, each preceded by the end-of-text token (GPT-2's BOS convention)."""
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.append(eot)
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="mri_lens/model/bundled/tiny_lm")
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-mlp", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    files = stdlib_files()
    train_files, held_files = split_files(files)
    train_texts = [read(f) for f in train_files]
    held_texts = [read(f) for f in held_files]
    tok = train_tokenizer(train_texts, args.vocab)
    train_ids = encode_files(tok, train_texts)
    held_ids = encode_files(tok, held_texts)
    print(f"train tokens {len(train_ids):,}  held-out tokens {len(held_ids):,}", flush=True)

    eot = tok.token_to_id(EOT)
    cfg = GPT2Config(
        vocab_size=tok.get_vocab_size(), n_positions=args.ctx, n_embd=args.d_model, n_layer=args.layers,
        n_head=args.heads, n_inner=args.d_mlp, activation_function="gelu_new", resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters {n_params:,}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(args.seed)
    n_windows = len(train_ids) - args.ctx - 1

    def held_out_loss() -> float:
        model.eval()
        losses = []
        with torch.inference_mode():
            starts = range(0, len(held_ids) - args.ctx - 1, args.ctx)
            batch = [held_ids[s:s + args.ctx] for s in starts]
            for i in range(0, len(batch), 32):
                x = torch.stack(batch[i:i + 32])
                losses.append(model(x, labels=x).loss.item() * len(x))
        model.train()
        return sum(losses) / len(batch)

    t0 = time.time()
    model.train()
    log = []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, n_windows, (args.batch,), generator=gen)
        x = torch.stack([train_ids[s:s + args.ctx] for s in starts.tolist()])
        loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - t0:.0f}s", flush=True)
            log.append({"step": step, "train_loss": round(loss.item(), 4)})
    final_held = held_out_loss()
    print(f"held-out loss {final_held:.3f} (perplexity {math.exp(final_held):.1f})", flush=True)

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    # A plain tokenizer_config that both transformers 4.x and 5.x read.
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.out, "tokenizer.json"),
                                   bos_token=EOT, eos_token=EOT, pad_token=EOT, unk_token=EOT)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
                   "pad_token": EOT, "unk_token": EOT, "model_max_length": args.ctx,
                   "add_prefix_space": False}, f, indent=2)
    del fast
    for junk in ("generation_config.json",):
        path = os.path.join(args.out, junk)
        if os.path.exists(path):
            os.remove(path)
    record = {
        "data": "Python standard library top-level modules (*.py: code, comments, docstrings)",
        "python": platform.python_version(), "torch": torch.__version__,
        "train_files": len(train_files), "held_out_files": [os.path.basename(f) for f in held_files],
        "train_tokens": len(train_ids), "held_out_tokens": len(held_ids),
        "steps": args.steps, "batch": args.batch, "ctx": args.ctx, "tokens_seen": args.steps * args.batch * args.ctx,
        "lr": args.lr, "seed": args.seed, "parameters": n_params,
        "architecture": {"n_layer": args.layers, "d_model": args.d_model, "n_head": args.heads,
                         "d_mlp": args.d_mlp, "vocab": tok.get_vocab_size(), "act": "gelu_new"},
        "held_out_loss": round(final_held, 4), "held_out_perplexity": round(math.exp(final_held), 2),
        "train_seconds": round(time.time() - t0, 1), "log": log, "command": " ".join(["python"] + sys.argv),
    }
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(f"saved to {args.out}", flush=True)


if __name__ == "__main__":
    main()
