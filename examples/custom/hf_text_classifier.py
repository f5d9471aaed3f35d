"""A Hugging Face `Trainer` script with two trainsmart lines: the import and `callbacks=[TrainsmartCallback()]`.

A small BERT, built from a config (random weights: nothing is downloaded), learns whether a sequence of
generated token ids contains a marker token. The callback reports each epoch's `eval_loss`,
`eval_accuracy` and train `loss` under the Trainer's own names, progress in epochs and steps, and on
SIGTERM (suspend, a sweep's early stop) it stops after the current step, lets the Trainer save
`checkpoint-<step>` and exits 13; `output_dir()` and `resume_from_checkpoint()` put the checkpoints on
the job's checkpoint volume and resume from the newest. Outside a TrainingJob it runs as it is:

    python3 examples/custom/hf_text_classifier.py --epochs 2
"""

from __future__ import annotations

import argparse

import torch
from transformers import BertConfig, BertForSequenceClassification, EvalPrediction, Trainer, TrainingArguments

from trainsmart_client.callbacks.huggingface import TrainsmartCallback, output_dir, resume_from_checkpoint

VOCAB, LENGTH, MARKER = 64, 16, 7


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rows", type=int, default=2048, help="generated training sequences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def sequences(rows: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Random token ids; the label says whether MARKER occurs (about half of them get one planted)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(MARKER + 1, VOCAB, (rows, LENGTH), generator=generator)
    labels = torch.randint(0, 2, (rows,), generator=generator)
    where = torch.randint(0, LENGTH, (rows,), generator=generator)
    ids[labels == 1, where[labels == 1]] = MARKER
    return [{"input_ids": ids[row], "labels": labels[row]} for row in range(rows)]


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    training = TrainingArguments(
        output_dir=output_dir("hf-output"),  # the job's checkpoint volume when it has one
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=training,
        train_dataset=sequences(args.rows, args.seed + 1),
        eval_dataset=sequences(max(args.rows // 4, 64), args.seed + 2),
        compute_metrics=accuracy,
        callbacks=[TrainsmartCallback()],
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint())


if __name__ == "__main__":
    main()
