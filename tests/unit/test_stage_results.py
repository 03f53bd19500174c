"""Stage results persist as JSON of this project's pydantic models; nothing else is loaded back."""
import json

import pytest

from tasks.stage import STAGE_RESULTS
from tasks.model import ModelRef


def test_a_stage_result_round_trips_as_plain_json(tmp_path):
    ref = ModelRef(name_or_path="org/name", path=str(tmp_path))
    blob = STAGE_RESULTS.dumps(ref)
    record = json.loads(blob)  # plain JSON, readable by anyone
    assert record["model"] == "tasks.model.ModelRef" and record["data"]["path"] == str(tmp_path)
    assert STAGE_RESULTS.loads(blob) == ref


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval", "pathlib.Path"])
def test_a_forged_record_naming_another_type_is_refused(name):
    with pytest.raises(ValueError, match="refusing"):
        STAGE_RESULTS.loads(json.dumps({"model": name, "data": "echo pwned"}).encode())


def test_a_tuneforge_name_that_is_not_a_model_is_refused():
    with pytest.raises(ValueError, match="not a pydantic model"):
        STAGE_RESULTS.loads(json.dumps({"model": "tasks.stage.run_stage", "data": {}}).encode())


def test_a_failed_stage_error_is_kept_as_text():
    loaded = STAGE_RESULTS.loads(STAGE_RESULTS.dumps(ConnectionError("tracking server went away")))
    assert isinstance(loaded, RuntimeError) and str(loaded) == "ConnectionError: tracking server went away"
