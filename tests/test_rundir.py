"""The run log: CRC per line, torn and edited lines, version-1 logs, atomic creation."""
import pytest

from tuner.errors import TunerError
from tuner.run.rundir import RunDir, append_row, read_results, timestamp

NAMES = ["x", "y"]


def row(i, **kw):
    return {"eval_id": i, "x": 0.1 * i, "y": 2.0, "objective": 1.0 / (i + 1), "status": "ok",
            "elapsed": 0.01, "timestamp": timestamp(), "worker": 1, "error": "", **kw}


@pytest.fixture
def run(tmp_path):
    r = RunDir.create(tmp_path / "r", {"fit": {}}, NAMES)
    for i in range(5):
        append_row(r.results_path, r.header(), row(i, error="a, \"quoted\" error"))
    return r


def test_round_trip(run):
    f = read_results(run.results_path)
    assert f.eval_id.tolist() == list(range(5)) and f.attrs["warnings"] == []
    assert f.x.tolist() == [0.1 * i for i in range(5)]
    assert (f.error == 'a, "quoted" error').all()


def test_edited_value_is_not_a_result(run):
    text = run.results_path.read_text().replace("0.2,2.0", "0.3,2.0", 1)
    run.results_path.write_text(text)
    f = read_results(run.results_path)
    assert 2 not in set(f.eval_id) and len(f.attrs["warnings"]) == 1
    assert f.attrs["last_id"] == 4


@pytest.mark.parametrize("cut", [1, 5, 12, 30])
def test_torn_tail_then_append(run, cut):
    raw = run.results_path.read_bytes()
    run.results_path.write_bytes(raw[:-cut])
    f = read_results(run.results_path)
    # Only the newline lost: the record is whole (its CRC says so); more: it is torn.
    assert len(f) == (5 if cut == 1 else 4) and f.attrs["last_id"] == 4
    append_row(run.results_path, run.header(), row(5))
    g = read_results(run.results_path)
    assert g.eval_id.is_unique and len(g) == len(f) + 1


def test_duplicate_eval_id_kept_once(run):
    append_row(run.results_path, run.header(), row(3, objective=9.0))
    f = read_results(run.results_path)
    assert len(f) == 5 and f.loc[f.eval_id == 3, "objective"].item() == 0.25
    assert "repeat an eval_id" in f.attrs["warnings"][0]


def test_version_1_log_still_reads(tmp_path):
    p = tmp_path / "results.csv"
    p.write_text("eval_id,x,y,objective,status,elapsed,timestamp,worker,error\r\n"
                 "0,0.5,2.0,0.1,ok,0.01,2025-01-01T00:00:00.000,1,\r\n"
                 "1,0.5,2.0,0.1,ok,0.01,2025-01-01T00:00:0")
    f = read_results(p)
    assert f.eval_id.tolist() == [0] and f.attrs["last_id"] == 1


def test_header_must_match_the_run(run):
    assert run.check_header(NAMES)
    with pytest.raises(TunerError, match="header does not match"):
        run.check_header(["x", "z"])


def test_create_refuses_existing_and_leaves_nothing_on_failure(tmp_path, run):
    with pytest.raises(TunerError, match="exists"):
        RunDir.create(run.path, {"fit": {}}, NAMES)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TunerError, match="is a file"):
        RunDir.create(blocker / "a" / "b", {"fit": {}}, NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "r"]


def test_lock_is_exclusive(run):
    held = run.lock()
    with pytest.raises(TunerError, match="another tuner process"):
        RunDir(run.path).lock()
    held.release()
    RunDir(run.path).lock().release()
