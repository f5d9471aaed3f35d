"""The wrapper's metric-line parsers and line splitting, on output shaped like real training scripts'.

Pins:
- JSON: a printed object (also after a log prefix, nested, with NaN) gives its numbers as metrics; a whole
  epoch is an epoch, a fractional one (Hugging Face's `'epoch': 0.25`) is progress; Hugging Face's printed
  Python dicts parse too; step and totals are taken out of the metrics; non-objects and prose give nothing;
- key=value: pairs in plain lines, tqdm and Lightning progress bars and ANSI-coloured lines; numbers with
  units, version strings and words are not metrics; the epoch key is configurable and case-insensitive;
- regex: named groups are metrics, a `name`/`value` pair names the metric from the line, every match in a
  line counts; a pattern without named groups is refused;
- splitting: partial lines are held across reads, `\\r` ends a line (progress bars), `\\r\\n` is one end,
  a 1 MB line comes through whole, a line past the limit is dropped without losing the next one, bytes that
  are not UTF-8 decode with replacement instead of failing.
"""

from __future__ import annotations

import json
import math

import pytest

from trainsmart_client.line_parsers import (
    LineSplitter,
    compile_pattern,
    decode,
    json_parser,
    key_value_parser,
    make_parser,
    regex_parser,
    strip_ansi,
)

# ---- JSON ------------------------------------------------------------------------------------------------


def test_a_json_line_with_an_epoch_is_an_epoch_with_its_metrics() -> None:
    parsed = json_parser()('{"epoch": 3, "train_loss": 0.21, "val_loss": 0.25, "val_accuracy": 0.91}')
    assert parsed is not None
    assert parsed.epoch == 3
    assert parsed.metrics == {"train_loss": 0.21, "val_loss": 0.25, "val_accuracy": 0.91}


def test_json_after_a_log_prefix_and_nested_objects_are_read() -> None:
    parsed = json_parser()('2025-01-01 12:00:00 INFO metrics {"epoch": 2, "val": {"loss": 0.3, "acc": 0.8}}')
    assert parsed is not None
    assert parsed.epoch == 2
    assert parsed.metrics == {"val_loss": 0.3, "val_acc": 0.8}


def test_hugging_face_printed_dicts_parse_and_a_fractional_epoch_is_progress() -> None:
    parse = json_parser()
    step_log = parse("{'loss': 0.6931, 'grad_norm': 1.25, 'learning_rate': 4.5e-05, 'epoch': 0.25}")
    assert step_log is not None
    assert step_log.epoch is None
    assert step_log.epoch_fraction == 0.25
    assert step_log.metrics == {"loss": 0.6931, "grad_norm": 1.25, "learning_rate": 4.5e-05}
    eval_log = parse("{'eval_loss': 0.52, 'eval_accuracy': 0.8, 'eval_runtime': 1.2, 'epoch': 1.0}")
    assert eval_log is not None
    assert eval_log.epoch == 1
    assert eval_log.metrics["eval_accuracy"] == 0.8


def test_non_finite_values_are_kept_for_diagnosis() -> None:
    from_json = json_parser()('{"epoch": 4, "train_loss": NaN, "val_loss": Infinity}')
    from_python = json_parser()("{'loss': nan, 'info_rate': -inf, 'epoch': 0.5}")
    assert from_json is not None and from_python is not None
    assert math.isnan(from_json.metrics["train_loss"]) and from_json.metrics["val_loss"] == math.inf
    assert math.isnan(from_python.metrics["loss"]) and from_python.metrics["info_rate"] == -math.inf


def test_step_and_totals_are_not_metrics() -> None:
    parsed = json_parser()(json.dumps({"step": 120, "total_steps": 1000, "epochs": 10, "loss": 0.4, "ok": True}))
    assert parsed is not None
    assert (parsed.step, parsed.total_steps, parsed.total_epochs) == (120, 1000, 10)
    assert parsed.metrics == {"loss": 0.4}


@pytest.mark.parametrize(
    "line",
    ["Epoch 3/10", "[1, 2, 3]", '{"model": "resnet", "note": "no numbers"}', "{not json at all}", ""],
)
def test_lines_without_metrics_give_nothing(line: str) -> None:
    assert json_parser()(line) is None


# ---- key=value -------------------------------------------------------------------------------------------


def test_key_value_pairs_in_a_plain_line() -> None:
    parsed = key_value_parser()("epoch=3 loss=0.21 val_accuracy=9.1e-1 lr=1e-3")
    assert parsed is not None
    assert parsed.epoch == 3
    assert parsed.metrics == {"loss": 0.21, "val_accuracy": 0.91, "lr": 0.001}


def test_tqdm_and_lightning_progress_bars_give_their_postfix_metrics() -> None:
    tqdm = "Epoch 2:  45%|████▌     | 45/100 [00:03<00:04, 13.2it/s, loss=0.342, acc=0.875]"
    lightning = "Epoch 1: 100%|██████████| 32/32 [00:01<00:00, 25.31it/s, v_num=0, train_loss=0.123, val_loss=0.2]"
    parsed_tqdm, parsed_lightning = key_value_parser()(tqdm), key_value_parser()(lightning)
    assert parsed_tqdm is not None and parsed_lightning is not None
    assert parsed_tqdm.metrics == {"loss": 0.342, "acc": 0.875}
    assert parsed_lightning.metrics == {"v_num": 0.0, "train_loss": 0.123, "val_loss": 0.2}


def test_ansi_colours_do_not_hide_metrics() -> None:
    coloured = "\x1b[1m\x1b[32mepoch\x1b[0m=\x1b[33m5\x1b[0m \x1b[36mval_loss\x1b[0m=0.17\x1b]0;title\x07"
    assert strip_ansi(coloured) == "epoch=5 val_loss=0.17"
    parsed = key_value_parser()(coloured)
    assert parsed is not None
    assert parsed.epoch == 5
    assert parsed.metrics == {"val_loss": 0.17}


def test_units_versions_and_words_are_not_metric_values() -> None:
    parsed = key_value_parser()("time=3.2s version=1.2.3 device=cuda loss=0.5. done")
    assert parsed is not None
    assert parsed.metrics == {"loss": 0.5}


def test_the_epoch_key_is_configurable_and_case_insensitive() -> None:
    parsed = key_value_parser("iteration")("Iteration=7 loss=0.1 epoch=2")
    assert parsed is not None
    assert parsed.epoch == 7
    assert parsed.metrics == {"loss": 0.1, "epoch": 2.0}


# ---- regex -----------------------------------------------------------------------------------------------


def test_named_groups_are_metrics_and_the_epoch_group_is_the_epoch() -> None:
    parse = regex_parser(r"Epoch (?P<epoch>\d+)/\d+ .* val_acc: (?P<val_accuracy>[0-9.]+)")
    parsed = parse("Epoch 4/10 - 2s - loss: 0.31 - val_acc: 0.88")
    assert parsed is not None
    assert parsed.epoch == 4
    assert parsed.metrics == {"val_accuracy": 0.88}


def test_name_and_value_groups_name_the_metric_and_every_match_counts() -> None:
    parse = regex_parser(r"(?P<name>[a-z_]+): (?P<value>[-+0-9.eE]+)")
    parsed = parse("32/32 [====] - 1s 3ms/step - loss: 0.2134 - accuracy: 0.9172 - val_loss: 0.25")
    assert parsed is not None
    assert parsed.metrics == {"loss": 0.2134, "accuracy": 0.9172, "val_loss": 0.25}


def test_a_pattern_without_named_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="no named groups"):
        compile_pattern(r"loss=([0-9.]+)")
    with pytest.raises(ValueError, match="--pattern"):
        make_parser("regex")


# ---- splitting -------------------------------------------------------------------------------------------


def test_partial_lines_are_held_until_they_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"epoch": 1, "lo') == []
    assert splitter.feed(b'ss": 0.5}\n{"epoch"') == [b'{"epoch": 1, "loss": 0.5}']
    assert splitter.feed(b": 2}") == []
    assert splitter.flush() == [b'{"epoch": 2}']


def test_carriage_returns_end_progress_bar_lines_and_crlf_is_one_end() -> None:
    splitter = LineSplitter()
    lines = splitter.feed(b"step 1 loss=0.9\rstep 2 loss=0.8\rstep 3 loss=0.7\r\nepoch=1 loss=0.7\r\n")
    assert lines == [b"step 1 loss=0.9", b"step 2 loss=0.8", b"step 3 loss=0.7", b"epoch=1 loss=0.7"]


def test_a_one_megabyte_line_comes_through_whole() -> None:
    big = json.dumps({"epoch": 1, "val_loss": 0.5, "payload": "x" * 1_000_000}).encode()
    splitter = LineSplitter()
    lines = [line for start in range(0, len(big), 65536) for line in splitter.feed(big[start : start + 65536])]
    lines += splitter.feed(b"\n")
    assert lines == [big]
    parsed = json_parser()(decode(lines[0]))
    assert parsed is not None and parsed.metrics == {"val_loss": 0.5}


def test_a_line_past_the_limit_is_dropped_and_the_next_line_survives() -> None:
    splitter = LineSplitter(max_line_bytes=1000)
    lines = splitter.feed(b"a" * 600) + splitter.feed(b"b" * 600) + splitter.feed(b"c\nepoch=1 loss=0.5\n")
    assert lines == [b"epoch=1 loss=0.5"]
    assert splitter.feed(b"d" * 2000 + b"\nok\n") == [b"ok"]


def test_bytes_that_are_not_utf8_decode_with_replacement() -> None:
    line = b"\xff\xfeepoch=2 loss=0.4 caf\xe9"
    text = decode(line)
    assert "\ufffd" in text
    parsed = key_value_parser()(text)
    assert parsed is not None and parsed.epoch == 2 and parsed.metrics == {"loss": 0.4}
