"""Which failures are expected (message only) and which keep their traceback."""
import pytest
from prefect.exceptions import FailedRun

from flows.errors import EXIT_CONFIG, EXIT_FAILED, expected_error, report
from flows.run import DriftGateFailed
from tasks.config import ConfigError
from tasks.data.errors import DataError, LicenseBlocked


def test_config_data_license_and_gate_errors_are_expected():
    for err in (ConfigError("c"), DataError("d"), LicenseBlocked("l"), DriftGateFailed("drift gate failed: x")):
        assert expected_error(err) is err


def test_an_explicit_cause_is_followed():
    data = DataError("train.jsonl:3: malformed JSON")
    wrapped = RuntimeError("stage failed")
    wrapped.__cause__ = data
    assert expected_error(wrapped) is data


def test_prefect_wrappers_are_looked_through_other_errors_are_not():
    data = DataError("missing")
    failed = FailedRun("Run failed.")
    failed.__context__ = data
    assert expected_error(failed) is data
    during = KeyError("a bug while handling a data error")
    during.__context__ = data
    assert expected_error(during) is None  # a bug: keep its traceback


@pytest.mark.parametrize("err, code, text", [
    (ConfigError("conf/x.yaml: invalid config\n  train.zzz: unknown key"), EXIT_CONFIG,
     "conf/x.yaml: invalid config\n  train.zzz: unknown key\n"),
    (DataError("source 'gone': x.jsonl does not exist"), EXIT_FAILED, "error: source 'gone': x.jsonl does not exist\n"),
])
def test_report_prints_the_message_and_returns_the_exit_code(capsys, err, code, text):
    assert report(err) == code
    assert capsys.readouterr().err == text
