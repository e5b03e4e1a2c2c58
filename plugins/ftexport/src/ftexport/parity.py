"""Does an exported model answer like the run it came from? Token ids, logits and greedy generations, compared.

The reference outputs are computed first, from the run as ``ft generate`` serves it (base + adapter, or the
full fine-tune's weights), in float32; the export is then judged by a program that serves GGUF files:

- **llama.cpp** (through llama-cpp-python, when it is installed): the file's own tokenizer (``tokenizer.ggml.pre``,
  special tokens, add-BOS/EOS) encodes the prompts, whose ids must equal the run tokenizer's; the model scores
  the reference ids and generates greedily from them; the chat template is read from the file;
- otherwise **transformers' GGUF loader**, which rebuilds a tokenizer from the vocabulary (ignoring ``pre``) and
  runs the weights in float32: it checks the weights, not how llama.cpp tokenizes.

A greedy generation that parts from the reference is excused only where the reference itself hesitated: at the
first differing token, the reference's logit margin between its choice and the export's is within twice the
measured logit error. The report names its judge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Prompts used when the caller gives none: short, unlike any one task, and with what tokenizers split
#: differently (contractions, punctuation runs, digits, non-ASCII text).
DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Don't stop: we're sure it's 3.14, isn't it?! Let's see...",
    "Reverse the words: red green blue",
    "Café, naïve, Zürich — 東京 costs ¥1200 (2024).",
)
#: f16 weights: logits may differ by this fraction of the largest reference logit.
F16_TOLERANCE = 0.01


@dataclass(frozen=True)
class Reference:
    """The run's outputs on the prompts: token ids (run tokenizer), text tokenized, logits, greedy continuations."""

    texts: list[str]
    ids: list[list[int]]
    logits: list[Any]
    generations: list[list[int]]
    scores: list[Any]
    chat_template: str | None


@dataclass
class Parity:
    """How closely an export matches its run; ``passed`` is judged only where ``enforced``."""

    gguf_type: str
    #: what loaded and ran the export: "llama.cpp <version>" or "transformers <version>"
    judge: str
    prompts: int
    max_abs_diff: float
    relative_diff: float
    top1_agreement: float
    greedy_identical: int
    greedy_near_ties: int
    tokenizer_identical: int
    chat_template_identical: bool
    tolerance: float | None
    enforced: bool
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    #: False when the export could not be loaded back to compare (the reason is in ``note``)
    checked: bool = True
    note: str = ""

    def line(self) -> str:
        """One line for the terminal and the demo."""
        if not self.checked:
            return f"parity ({self.gguf_type}): not checked — {self.note}; the GGUF is kept unverified"
        judged = f"parity ({self.gguf_type}, judged by {self.judge})"
        if self.enforced:
            verdict = "passed" if self.passed else "FAILED"
        else:  # quantized weights are expected to differ; only tokenizer and template problems fail
            verdict = "FAILED" if self.problems else "reported (not enforced for quantized types)"
        tolerance = f" (tolerance {self.tolerance:.0%})" if self.tolerance is not None else ""
        ties = f", {self.greedy_near_ties} parted at a near-tie" if self.greedy_near_ties else ""
        return (
            f"{judged}: logits max |diff| {self.max_abs_diff:.2e} "
            f"({self.relative_diff:.2%} of max |logit|){tolerance}, top-1 agreement {self.top1_agreement:.1%}, "
            f"greedy {self.greedy_identical}/{self.prompts} identical{ties}, tokenizer "
            f"{self.tokenizer_identical}/{self.prompts} identical, chat template "
            f"{'identical' if self.chat_template_identical else 'DIFFERENT'}: {verdict}"
        )

    def as_json(self) -> dict[str, Any]:
        """The report as saved in ``<name>.parity.json``."""
        return asdict(self)


def unchecked(gguf_type: str, judge: str, prompts: int, reason: str) -> Parity:
    """The parity report of an export that cannot be loaded back: nothing measured, ``reason`` said."""
    return Parity(gguf_type, judge, prompts, 0.0, 0.0, 0.0, 0, 0, 0, False, None, False, checked=False, note=reason)


@dataclass(frozen=True)
class Judged:
    """The export's outputs on the reference: its own tokenization of the texts, its logits on the reference ids,
    its greedy continuations of them, and the chat template it carries."""

    judge: str
    ids: list[list[int]]
    logits: list[Any]
    generations: list[list[int]]
    chat_template: str | None


def prompt_texts(tokenizer: Any, prompts: list[str] | tuple[str, ...]) -> list[str]:
    """Each prompt as the model sees it: rendered with the chat template (generation prompt added) when there is one."""
    if not tokenizer.chat_template:
        return list(prompts)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def reference_outputs(
    model: Any, tokenizer: Any, prompts: list[str] | tuple[str, ...], max_new_tokens: int, stop_ids: list[int]
) -> Reference:
    """The run's logits and greedy continuations on ``prompts`` (computed before the export is loaded)."""
    texts = prompt_texts(tokenizer, prompts)
    ids = [tokenizer(text)["input_ids"] for text in texts]
    logits, generations, scores = [], [], []
    for row in ids:
        out_logits, tokens, step_scores = _run(model, row, max_new_tokens, stop_ids)
        logits.append(out_logits)
        generations.append(tokens)
        scores.append(step_scores)
    return Reference(texts, ids, logits, generations, scores, tokenizer.chat_template)


def compare(reference: Reference, judged: Judged, gguf_type: str) -> Parity:
    """How far the export's outputs (``judged``) are from the reference."""
    import numpy as np

    max_diff = max_logit = 0.0
    agree = positions = 0
    for ref_logits, logits in zip(reference.logits, judged.logits, strict=True):
        max_diff = max(max_diff, float(np.abs(logits - ref_logits).max()))
        max_logit = max(max_logit, float(np.abs(ref_logits).max()))
        agree += int((logits.argmax(-1) == ref_logits.argmax(-1)).sum())
        positions += ref_logits.shape[0]
    identical = ties = 0
    for ref_tokens, ref_scores, tokens in zip(reference.generations, reference.scores, judged.generations, strict=True):
        if tokens == ref_tokens:
            identical += 1
        elif _near_tie(ref_tokens, ref_scores, tokens, max_diff):
            ties += 1
    same_ids = sum(ids == ref_ids for ids, ref_ids in zip(judged.ids, reference.ids, strict=True))
    enforced = gguf_type == "f16"
    parity = Parity(
        gguf_type,
        judged.judge,
        len(reference.ids),
        max_diff,
        max_diff / max(max_logit, 1e-12),
        agree / max(positions, 1),
        identical,
        ties,
        same_ids,
        judged.chat_template == reference.chat_template,
        F16_TOLERANCE if enforced else None,
        enforced,
    )
    parity.problems = _problems(parity)
    parity.passed = not parity.problems
    return parity


def judge_with_transformers(model: Any, tokenizer: Any, reference: Reference, max_new_tokens: int,
                            stop_ids: list[int]) -> Judged:
    """The export as transformers' GGUF loader reads it (``model``, ``tokenizer``), run on the reference."""
    import transformers

    ids = [tokenizer(text)["input_ids"] for text in reference.texts]
    logits, generations = [], []
    for row in reference.ids:
        out_logits, tokens, _ = _run(model, row, max_new_tokens, stop_ids)
        logits.append(out_logits)
        generations.append(tokens)
    return Judged(f"transformers {transformers.__version__}", ids, logits, generations, tokenizer.chat_template)


def llama_cpp_version() -> str | None:
    """llama-cpp-python's version when it is installed and its library loads, else None."""
    try:
        import llama_cpp
    except Exception:  # not installed, or its shared library does not load on this machine
        return None
    return str(getattr(llama_cpp, "__version__", "?"))


def judge_with_llama_cpp(path: str, reference: Reference, max_new_tokens: int, stop_ids: list[int]) -> Judged:
    """The export as llama.cpp serves it: its tokenizer encodes the reference texts (special tokens parsed, BOS/EOS
    added as the file says), its model scores the reference ids (logits at every position) and continues each
    greedily until a stop id or ``max_new_tokens``; the chat template is the file's."""
    import llama_cpp
    import numpy as np

    vocab = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    try:
        ids = [vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True) for text in reference.texts]
        chat_template = vocab.metadata.get("tokenizer.chat_template")
    finally:
        vocab.close()
    longest = max(len(row) for row in reference.ids) + max_new_tokens
    model = llama_cpp.Llama(path, n_ctx=longest + 8, n_batch=longest + 8, logits_all=True, n_gpu_layers=0,
                            verbose=False)
    logits, generations = [], []
    try:
        for row in reference.ids:
            model.reset()
            model.eval(row)
            logits.append(np.array(model.scores[: len(row)], dtype=np.float32))
            tokens: list[int] = []
            while len(tokens) < max_new_tokens:
                token = int(np.argmax(model.scores[model.n_tokens - 1]))
                tokens.append(token)
                if token in stop_ids:
                    break
                model.eval([token])
            generations.append(tokens)
    finally:
        model.close()
    return Judged(f"llama.cpp (llama-cpp-python {llama_cpp.__version__})", ids, logits, generations, chat_template)


def _problems(parity: Parity) -> list[str]:
    """What fails the check: tokenizer or template differences always, numbers only where enforced."""
    problems = []
    if parity.tokenizer_identical < parity.prompts:
        problems.append(
            f"the exported tokenizer encodes {parity.prompts - parity.tokenizer_identical} prompt(s) differently"
        )
    if not parity.chat_template_identical:
        problems.append("the exported chat template differs from the run's")
    if parity.enforced:
        if parity.relative_diff > (parity.tolerance or 0.0):
            problems.append(
                f"logits differ by {parity.relative_diff:.2%} of max |logit| (tolerance {parity.tolerance:.0%})"
            )
        parted = parity.prompts - parity.greedy_identical - parity.greedy_near_ties
        if parted:
            problems.append(f"{parted} greedy generation(s) part from the run's where the run did not hesitate")
    return problems


def _near_tie(ref_tokens: list[int], ref_scores: list[Any], tokens: list[int], max_diff: float) -> bool:
    """True when the first differing token was within logit noise of the reference's choice."""
    for step, (mine, theirs) in enumerate(zip(ref_tokens, tokens, strict=False)):
        if mine != theirs:
            scores = ref_scores[step]
            return float(scores[mine] - scores[theirs]) <= 2 * max_diff
    return False  # one is a prefix of the other: a stop token was chosen differently, and decisively


def _run(model: Any, ids: list[int], max_new_tokens: int, stop_ids: list[int]) -> tuple[Any, list[int], list[Any]]:
    """``(prompt logits, greedy new tokens, per-step logits)`` of ``model`` on one prompt, float32 numpy arrays."""
    import torch

    input_ids = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids).logits[0].float().cpu()
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=stop_ids or None,
            pad_token_id=(stop_ids or [0])[0],
            output_logits=True,
            return_dict_in_generate=True,
        )
    tokens = out.sequences[0, len(ids) :].tolist()
    step_logits = [step[0].float().cpu().numpy() for step in out.logits]
    return logits.numpy(), tokens, step_logits
