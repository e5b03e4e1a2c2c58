"""Method ``rm``: a reward model trained on preference pairs (imported only when a run starts).

ft loads the base as a sequence classifier with one output (the method's ``model_kind``), so the model *is* the
reward model: a scalar head on the base's last token, every weight trained. Each step scores prompt + chosen and
prompt + rejected and minimises the Bradley-Terry loss ``-log sigmoid(r_chosen - r_rejected)``; with eval data, the
held-out pair accuracy (the share of pairs whose chosen answer scores higher) is logged as ``eval_accuracy``.
"""

from __future__ import annotations

from typing import Any


def pair_collator(tokenizer: Any, max_length: int) -> Any:
    """A collator turning rows of prompt/chosen/rejected text into one batch: the chosen texts, then the rejected."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [r["prompt"] + r["chosen"] for r in rows] + [r["prompt"] + r["rejected"] for r in rows]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    return collate


def pair_accuracy(prediction: Any) -> dict[str, float]:
    """The share of held-out pairs whose chosen answer scores higher than the rejected one."""
    scores = prediction.predictions
    return {"accuracy": float((scores[:, 0] > scores[:, 1]).mean())}


def build_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                  callbacks: list[Any], config: Any, options: Any) -> Any:
    """A ``transformers.Trainer`` with the Bradley-Terry loss over (chosen, rejected) scores."""
    import torch
    from transformers import Trainer

    class PairTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            rewards = model(**inputs).logits.squeeze(-1).float()
            chosen, rejected = rewards.chunk(2)
            loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
            if options.center_rewards_coefficient:
                loss = loss + options.center_rewards_coefficient * (rewards ** 2).mean()
            return (loss, torch.stack([chosen, rejected], dim=1)) if return_outputs else loss

        def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                            ignore_keys: Any = None) -> Any:
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss, scores = self.compute_loss(model, inputs, return_outputs=True)
            if prediction_loss_only:
                return loss.detach(), None, None
            # No labels: the chosen answer is the first column by construction.
            return loss.detach(), scores.detach(), torch.zeros(scores.shape[0], device=scores.device)

    model.config.pad_token_id = tokenizer.pad_token_id
    args.remove_unused_columns = False  # the collator reads the text columns
    return PairTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                       processing_class=tokenizer, callbacks=callbacks,
                       data_collator=pair_collator(tokenizer, config.data.max_seq_len),
                       compute_metrics=pair_accuracy if eval_dataset is not None else None)
