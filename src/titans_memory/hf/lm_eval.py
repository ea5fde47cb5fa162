"""lm-evaluation-harness on a Titans checkpoint: its own command line, with "titans" registered first.

    pip install 'titans-miras[hf]' 'lm-eval[hf]'
    python -m titans_memory.hf.lm_eval run --model hf \\
        --model_args pretrained=runs/titans/checkpoints/step_0002000,dtype=float32 \\
        --tasks lambada_openai --batch_size 1

Every lm-eval argument works as documented by lm-eval; this only imports
:mod:`titans_memory.hf` (which registers the model with transformers' Auto classes) before handing
over. The checkpoint folder holds the tokenizer (bytes, ids = byte values), so ``pretrained=DIR``
is all lm-eval needs. Loglikelihood tasks batch freely; generation tasks need ``--batch_size 1``
(lm-eval pads generation batches on the left, which a memory model would read as text).
"""

from __future__ import annotations

import titans_memory.hf  # noqa: F401 -- registers "titans" with AutoConfig / AutoModelForCausalLM


def main() -> None:
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        raise SystemExit("lm-eval is not installed: pip install 'lm-eval[hf]'") from None
    cli_evaluate()


if __name__ == "__main__":
    main()
