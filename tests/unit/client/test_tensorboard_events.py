"""The client's stdlib TensorBoard reader, on event files written by the real `tensorboard` package.

Pins:
- `simple_value` scalars and tensor-encoded scalars (float, double, half, bfloat16, raw `tensor_content`)
  are read by tag and step; histograms, multi-element tensors and text are skipped;
- the CRC-32C masking matches TFRecord's (the reader checks every small record);
- a file is read incrementally while the writer appends, and a record not yet complete is read next poll;
  event files in run subdirectories are found;
- TensorBoard steps become reports: a step with the epoch tag is an epoch report, `--epoch-key step` makes
  every step an epoch, other steps are progress;
- `wrap --tensorboard-dir`: a script writing events (and printing nothing) gets its epochs into the real
  endpoint's inbox.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from support.client_reports import JOB, Endpoint, PostRecorder
from trainsmart_client.event_files import EventDirectoryWatcher, EventFileReader, Scalar, masked_crc
from trainsmart_client.job_env import JobEnvironment
from trainsmart_client.session import Session
from trainsmart_client.wrapper import apply_scalars
from trainsmart_trainer.contract import ReportKind


def scalars_metadata() -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def event(step: int, *values: summary_pb2.Summary.Value) -> event_pb2.Event:
    return event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=list(values)))


def simple(tag: str, value: float) -> summary_pb2.Summary.Value:
    return summary_pb2.Summary.Value(tag=tag, simple_value=value)


def tensor(tag: str, proto: tensor_pb2.TensorProto, plugin: bool = True) -> summary_pb2.Summary.Value:
    metadata = scalars_metadata() if plugin else None
    return summary_pb2.Summary.Value(tag=tag, tensor=proto, metadata=metadata)


def write_events(logdir: Path, events: list[event_pb2.Event]) -> Path:
    writer = EventFileWriter(str(logdir))
    for item in events:
        writer.add_event(item)
    writer.close()
    (path,) = logdir.glob("*tfevents*")
    return path


def test_simple_and_tensor_scalars_are_read_and_other_summaries_skipped(tmp_path: Path) -> None:
    half_bits = int(np.array([0.5], dtype=np.float16).view(np.uint16)[0])
    bfloat_bits = int(np.array([0.25], dtype=np.float32).view(np.uint32)[0] >> 16)
    events = [
        event(1, simple("train/loss", 0.75), simple("epoch", 1.0)),
        event(
            2,
            tensor("val/accuracy", tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.875])),
            tensor("val/loss", tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[0.125])),
            tensor("lr", tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF, half_val=[half_bits])),
            tensor("bf", tensor_pb2.TensorProto(dtype=types_pb2.DT_BFLOAT16, half_val=[bfloat_bits])),
            tensor("raw", tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=struct.pack("<f", 2.5))),
            tensor("count", tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[-3]), plugin=False),
        ),
        event(
            3,
            summary_pb2.Summary.Value(tag="weights", histo=summary_pb2.HistogramProto(min=0, max=1, num=3)),
            tensor(
                "vector",
                tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_FLOAT,
                    tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)]),
                    float_val=[1, 2, 3],
                ),
            ),
            tensor("notes", tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"hello"]), plugin=False),
        ),
    ]
    read = EventFileReader(write_events(tmp_path, events)).read()
    assert {(item.step, item.tag): item.value for item in read} == {
        (1, "train/loss"): 0.75,
        (1, "epoch"): 1.0,
        (2, "val/accuracy"): 0.875,
        (2, "val/loss"): 0.125,
        (2, "lr"): 0.5,
        (2, "bf"): 0.25,
        (2, "raw"): 2.5,
        (2, "count"): -3.0,
    }


def test_the_crc_masking_is_tfrecords(tmp_path: Path) -> None:
    data = write_events(tmp_path, [event(1, simple("loss", 1.0))]).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    assert struct.unpack("<I", data[8:12])[0] == masked_crc(data[:8])
    assert struct.unpack("<I", data[12 + length : 16 + length])[0] == masked_crc(data[12 : 12 + length])


def test_files_are_read_incrementally_and_partial_records_wait(tmp_path: Path) -> None:
    source = write_events(tmp_path / "source", [event(step, simple("loss", 1.0 / step)) for step in range(1, 5)])
    data = source.read_bytes()
    run_dir = tmp_path / "logs" / "run-1"
    run_dir.mkdir(parents=True)
    growing = run_dir / source.name
    watcher = EventDirectoryWatcher(tmp_path / "logs")
    assert watcher.poll() == []
    cut = len(data) - 10  # inside the last record
    growing.write_bytes(data[:cut])
    assert [item.step for item in watcher.poll()] == [1, 2, 3]
    with growing.open("ab") as handle:
        handle.write(data[cut:])
    assert [item.step for item in watcher.poll()] == [4]
    assert watcher.poll() == []


def test_steps_become_epoch_or_progress_reports(job_env: JobEnvironment, recorder: PostRecorder) -> None:
    session = Session(job_env, post=recorder, progress_interval_s=0.0)
    apply_scalars(session, [Scalar(10, 0.0, "train/loss", 0.5)], "epoch")
    assert session.finish(5)
    apply_scalars(session, [Scalar(20, 0.0, "val/loss", 0.4), Scalar(20, 0.0, "epoch", 1.0)], "epoch")
    apply_scalars(session, [Scalar(2, 0.0, "val/loss", 0.3)], "step")
    assert session.finish(5)
    assert [(body["kind"], body["epoch"], body["step"]) for body in recorder.bodies] == [
        ("progress", 0, 10),
        ("epoch", 1, 20),
        ("epoch", 2, 2),
    ]
    assert recorder.bodies[1]["metrics"] == {"val/loss": 0.4}


WRITING_SCRIPT = """
import sys, time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
writer = EventFileWriter(sys.argv[1], flush_secs=1)
for epoch in range(1, 4):
    values = [summary_pb2.Summary.Value(tag="epoch", simple_value=epoch),
              summary_pb2.Summary.Value(tag="val_loss", simple_value=1.0 / epoch)]
    summary = summary_pb2.Summary(value=values)
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=epoch * 100, summary=summary))
    writer.flush()
    time.sleep(0.3)
writer.close()
"""


@pytest.mark.asyncio
async def test_a_wrapped_script_writing_tensorboard_events_reports_its_epochs(
    report_endpoint: Endpoint, clean_env: dict[str, str], tmp_path: Path
) -> None:
    logdir = tmp_path / "tb"
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "trainsmart_client", "wrap", "--tensorboard-dir", str(logdir)],
        *["--tensorboard-poll-seconds", "0.2", "--", sys.executable, "-c", WRITING_SCRIPT, str(logdir)],
        env={**clean_env, **report_endpoint.environ()},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    reports = report_endpoint.inbox.take(JOB)
    epochs = [report for report in reports if report.kind == ReportKind.EPOCH]
    assert [(report.epoch, report.step, report.metrics) for report in epochs] == [
        (1, 100, {"val_loss": 1.0}),
        (2, 200, {"val_loss": 0.5}),
        (3, 300, {"val_loss": pytest.approx(1 / 3)}),
    ]
    assert reports[-1].kind == ReportKind.FINAL
