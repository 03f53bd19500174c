import pytest

from tasks.data.ledger import Ledger, sha256_json


def test_counts_balance_and_hidden_rows_are_hashed():
    led = Ledger()
    led.rows_in = 4
    row = {"id": "s:1", "text": "secret 536-22-1234"}
    led.drop("s:1", "s", "pii", ["US_SSN"], row, hide=True)
    led.drop("s:2", "s", "exact_duplicate", "same as s:0", {"id": "s:2"})
    assert led.counts(2, rows_train=2) == {"rows_in": 4, "rows_kept": 2, "dropped_exact_duplicate": 1, "dropped_pii": 1,
                                           "rows_train": 2}  # fmt: skip
    assert led.quarantine[0] == {"id": "s:1", "source": "s", "reason": "pii", "detail": ["US_SSN"], "sha256": sha256_json(row)}
    assert "row" in led.quarantine[1]


def test_unbalanced_books_fail_loudly():
    led = Ledger()
    led.rows_in = 3
    with pytest.raises(AssertionError, match="3 in != 2 kept"):
        led.counts(2)
