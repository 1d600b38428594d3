"""`shopfeast ingest` on the command line: fatal input stops with exit 2 and a human message."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfeast.cli import app
from tests.support.ingest_support import NOW, shop, tree, write_raw

runner = CliRunner()


def ingest_cli(raw: Path, data: Path, now: str = NOW):
    return runner.invoke(app, ["ingest", str(raw), "--data-dir", str(data), "--now", now])


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "raw", shop(), "csv")


def _drop_column(path: Path, column: str) -> None:
    lines = path.read_text().splitlines()
    cols = lines[0].split(",")
    i = cols.index(column)
    path.write_text(
        "\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != i) for line in lines)
        + "\n"
    )


def _fails(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_missing_required_column(raw: Path, tmp_path: Path) -> None:
    _drop_column(raw / "orders.csv", "order_ts")
    result = ingest_cli(raw, tmp_path / "data")
    _fails(result)
    assert result.stderr.strip() == "error: orders.csv: missing required column 'order_ts'"
    assert not (tmp_path / "data" / "clean").exists()  # nothing half-written


def test_missing_required_column_in_jsonl(raw: Path, tmp_path: Path) -> None:
    (raw / "reviews.csv").unlink()
    (raw / "reviews.jsonl").write_text('{"review_id": "r1", "product_id": "p1", "rating": 4}\n')
    _fails(ingest_cli(raw, tmp_path / "data"), "reviews.jsonl", "'review_ts'")


def test_missing_required_table_on_first_ingest(raw: Path, tmp_path: Path) -> None:
    (raw / "order_items.csv").unlink()
    _fails(ingest_cli(raw, tmp_path / "data"), "missing required table 'order_items'")


def test_optional_tables_may_be_absent(raw: Path, tmp_path: Path) -> None:
    (raw / "events.csv").unlink()
    (raw / "reviews.csv").unlink()
    result = ingest_cli(raw, tmp_path / "data")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("orders.parquet", b"PAR1 this is not parquet", "orders.parquet: cannot read"),
        ("orders.csv.gz", b"\x1f\x8b\x08\x00garbage", "orders.csv.gz: cannot read"),
        ("orders.jsonl", b'{"order_id": "o1"}\n{"order_id": \n', "orders.jsonl: line 2"),
        (
            "orders.csv",
            b"order_id,customer_id,order_ts,status,total_amount\no1,c1,2025-02-01,"
            b"completed,1,EXTRA\n",
            "orders.csv: line 2: 6 fields where the header has 5",
        ),
        ("orders.csv", b"", "orders.csv: cannot read: the file is empty"),
    ],
)
def test_unreadable_file(raw: Path, tmp_path: Path, name: str, content: bytes, needle: str):
    (raw / "orders.csv").unlink()
    (raw / name).write_bytes(content)
    _fails(ingest_cli(raw, tmp_path / "data"), needle)


def test_two_files_for_one_table(raw: Path, tmp_path: Path) -> None:
    shutil.copy(raw / "orders.csv", raw / "orders.jsonl")
    _fails(ingest_cli(raw, tmp_path / "data"), "orders: 2 files", "orders.csv", "orders.jsonl")


def test_bad_clock(raw: Path, tmp_path: Path) -> None:
    _fails(ingest_cli(raw, tmp_path / "data", now="tomorrow"), "--now")


def test_fatal_file_late_in_the_batch_leaves_nothing(raw: Path, tmp_path: Path) -> None:
    """reviews are read last; their corrupt file must not leave the other tables' rows behind."""
    data = tmp_path / "data"
    assert ingest_cli(raw, data).exit_code == 0
    before = tree(data)
    batch2 = write_raw(
        tmp_path / "raw2",
        shop(
            orders=[
                {
                    "order_id": "o9",
                    "customer_id": "c1",
                    "order_ts": "2025-03-01",
                    "status": "completed",
                    "total_amount": "1",
                }
            ]
        ),
        "csv",
    )
    (batch2 / "reviews.csv").unlink()
    (batch2 / "reviews.jsonl.gz").write_bytes(gzip.compress(b'{"review_id": "r1"\n'))
    _fails(ingest_cli(batch2, data), "reviews.jsonl.gz: line 1")
    assert tree(data) == before


def test_quarantined_rows_still_exit_0_with_a_summary(tmp_path: Path) -> None:
    raw = write_raw(
        tmp_path / "raw",
        shop(
            orders=[
                {
                    "order_id": "o9",
                    "customer_id": "c1",
                    "order_ts": "2025-03-01",
                    "status": "lost",
                    "total_amount": "1",
                }
            ]
        ),
        "csv",
    )
    result = ingest_cli(raw, tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "invalid_value 1" in result.stdout and "quarantined" in result.stdout
    again = ingest_cli(raw, tmp_path / "data")
    assert again.exit_code == 0 and "already ingested" in again.stdout


def test_real_command_exit_code(raw: Path, tmp_path: Path) -> None:
    _drop_column(raw / "customers.csv", "signup_ts")
    command = Path(sys.executable).parent / "shopfeast"  # the installed console script
    proc = subprocess.run(
        [str(command), "ingest", str(raw), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: customers.csv: missing required column 'signup_ts'"
