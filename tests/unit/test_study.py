"""Studies: deterministic names, a budget shared by workers, dead workers' trials."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperlab.errors import masked
from hyperlab.search import study
from hyperlab.search.samplers import GridSampler
from hyperlab.stores import DEFAULT_JOURNAL


def test_the_same_command_names_the_same_study_readably() -> None:
    from hyperlab.search.names import study_name

    a = study_name("lr_beta", ["search=lr_beta", "sampler=tpe", "epochs=5"])
    assert a == study_name(
        "lr_beta",
        [
            *("epochs=5", "sampler=tpe", "search=lr_beta", "sweep.n_trials=99"),
            *("sweep.workers=2", "sweep.population=8", "threads=2", "device=cpu"),  # how, not what
        ],
    )
    assert a == "lr_beta epochs:5 sampler:tpe"
    assert study_name("lr_beta", ["search=lr_beta", "sweep.n_trials=9"]) == "lr_beta"
    assert a != study_name("lr_beta", ["search=lr_beta", "sampler=random", "epochs=5"])


def test_a_name_gets_a_hash_only_where_its_words_cannot_tell_studies_apart() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hyperlab.search.names import study_name

    a = study_name("lr", ["model.hidden_units=[64,32]"])
    b = study_name("lr", ["model.hidden_units=[64 32]"])
    assert a.startswith("lr model.hidden_units:_64_32_ @") and a != b
    long = study_name("lr", [f"dataset.path=/data/{'x' * 100}.csv"])
    assert len(long) <= 80 and " @" in long
    for name in (a, long, study_name("lr", ["+extra=1", "lr=1e-3"])):
        # `task=retest study=NAME` takes every name as it is printed, quoted for the shell.
        assert OverridesParser.create().parse_override(f"study={name}").value() == name


def test_passwords_are_masked() -> None:
    assert masked("postgresql://bob:s3cret@db:5432/optuna") == (
        "postgresql://bob:***@db:5432/optuna"
    )
    assert masked("sqlite:///x.db") == "sqlite:///x.db"


WORKER = textwrap.dedent("""
    import sys, time, optuna
    from hyperlab.search import study
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = optuna.load_study(study_name=name, storage=study.storage(url))
    while (t := study.claim(s, url, n)) is not None:
        x = t.suggest_float("x", 0, 1)
        time.sleep(0.01)
        s.tell(t, x)
""")


def test_workers_sharing_a_journal_make_exactly_n_trials(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    optuna.create_study(study_name="s", storage=study.storage(url))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, "s", "30"]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    trials = optuna.load_study(study_name="s", storage=study.storage(url)).trials
    assert len(trials) == 30
    assert sorted(t.number for t in trials) == list(range(30))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.user_attrs[study.PID_ATTR] for t in trials}) == 3  # all three took part


POPULATION = textwrap.dedent("""
    import sys, time, optuna
    from hyperlab.search import study
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, n, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = optuna.load_study(study_name=name, storage=study.storage(url))
    while trials := study.claim_many(s, url, n, 4, worker=worker):
        print(len(trials), flush=True)
        time.sleep(0.01)
        for t in trials:
            s.tell(t, t.suggest_float("x", 0, 1))
""")


def test_workers_claiming_populations_make_exactly_n_trials(tmp_path: Path) -> None:
    """Claims of up to 4 trials under one hold of the lock: 30 trials, no more, each
    marked with the worker that claimed it; the last claims take what is left."""
    url = str(tmp_path / "journal.log")
    optuna.create_study(study_name="s", storage=study.storage(url))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", POPULATION, url, "s", "30", str(w)], stdout=subprocess.PIPE
        )
        for w in range(3)
    ]
    claims = [int(n) for p in procs for n in p.communicate(timeout=120)[0].split()]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum(claims) == 30 and max(claims) == 4
    trials = optuna.load_study(study_name="s", storage=study.storage(url)).trials
    assert sorted(t.number for t in trials) == list(range(30))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert {t.user_attrs[study.WORKER_ATTR] for t in trials} <= {0, 1, 2}


def test_a_population_claim_takes_a_waiting_retry_beyond_the_budget(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="s", storage=study.storage(url))
    for _ in range(2):
        s.tell(s.ask(), 1.0)
    s.enqueue_trial({})  # a retry waiting: it holds its place in the budget already
    (waiting,) = study.claim_many(s, url, 3, 5, worker=7)
    assert waiting.number == 2 and waiting.user_attrs[study.WORKER_ATTR] == 7
    assert study.claim_many(s, url, 3, 5) == []


def test_a_dead_workers_trial_is_failed_and_replaced(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="s", storage=study.storage(url))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t = s.ask()
    t.set_user_attr(study.HOST_ATTR, __import__("socket").gethostname())
    t.set_user_attr(study.PID_ATTR, dead.pid)  # a worker killed in the middle of its trial
    claimed = []
    while (trial := study.claim(s, url, 3)) is not None:
        s.tell(trial, 1.0)
        claimed.append(trial.number)
    states = {tr.number: tr.state for tr in s.trials}
    assert states[0] == TrialState.FAIL
    assert s.trials[0].user_attrs["fail_reason"] == study.DEAD_WORKER
    assert claimed == [1, 2, 3]  # the budget counts finished trials: 3 of them


def test_a_dead_workers_trial_is_retried_with_its_params(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="s", storage=study.storage(url))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t = s.ask()
    x = t.suggest_float("x", 0, 1)
    t.set_user_attr(study.HOST_ATTR, __import__("socket").gethostname())
    t.set_user_attr(study.PID_ATTR, dead.pid)
    retried = study.claim(s, url, 3, retry_failed=1)
    assert retried is not None
    assert retried.suggest_float("x", 0, 1) == x  # the enqueued copy, not a new sample
    assert retried.user_attrs["retry_of"] == 0
    retried.set_user_attr("fail_reason", "ValueError: bad")  # failed for its values now
    s.tell(retried, state=TrialState.FAIL)
    fresh = study.claim(s, url, 3, retry_failed=1)
    assert fresh is not None and "retry_of" not in fresh.user_attrs  # tried once only
    assert [tr.state for tr in s.trials if tr.state == TrialState.WAITING] == []


def test_a_live_workers_trial_counts_as_running(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="s", storage=study.storage(url))
    running = study.claim(s, url, 2)  # this process: alive
    assert running is not None
    other = study.claim(s, url, 2)
    assert other is not None
    assert study.claim(s, url, 2) is None  # two running trials fill a budget of two
    assert s.trials[0].state == TrialState.RUNNING


def test_an_rdb_url_works_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=study.storage(url))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, "s", "12"]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    trials = optuna.load_study(study_name="s", storage=study.storage(url)).trials
    assert sorted(t.number for t in trials) == list(range(12))
    assert {t.state for t in trials} == {TrialState.COMPLETE}


def test_an_unreachable_storage_is_a_clear_error() -> None:
    from hyperlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sweep.storage=postgresql://u:\*\*\*@127.0.0.1:1/x"):
        study.storage("postgresql://u:secret@127.0.0.1:1/x")


def test_the_journal_lock_never_dangles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Optuna's journal lock is a symlink to the journal; a worker killed while writing
    # leaves it behind, and Optuna frees it after a grace period only if it resolves.
    # A relative journal path (the default) made it dangle: the next worker spun forever.
    monkeypatch.chdir(tmp_path)
    storage = study.storage(DEFAULT_JOURNAL)
    lock = storage._backend._lock  # type: ignore[attr-defined]
    assert lock.acquire()
    try:
        link = Path(lock._lock_file)
        assert link.resolve() == (tmp_path / DEFAULT_JOURNAL).resolve()
        assert link.exists()  # os.path.exists follows the link: it points at a file
    finally:
        lock.release()


@pytest.mark.parametrize(
    ("pruner", "reported"),
    [(optuna.pruners.NopPruner(), {}), (optuna.pruners.MedianPruner(), {0: 0.5, 1: 0.6})],
)
def test_trials_report_each_epoch_only_to_a_pruner(
    pruner: optuna.pruners.BasePruner, reported: dict[int, float]
) -> None:
    from hyperlab.search.trial import PruningReporter

    s = optuna.create_study(pruner=pruner, direction="maximize")
    trial = s.ask()
    reporter = PruningReporter(trial, "dev_acc", epochs=2)
    for epoch, acc in enumerate((0.5, 0.6)):
        reporter.on_epoch_end(epoch, {"dev_acc": acc})
    s.tell(trial, 0.6)
    assert s.trials[0].intermediate_values == reported


def test_a_grid_is_walked_for_exhaustion_only_once_it_may_be_exhausted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """is_exhausted() walks every grid point (millions on a large space): claim() asks it
    only once the study holds as many trials as it needs, and it still ends a grid whose
    points failed trials used up."""
    url = str(tmp_path / "journal.log")
    grid = GridSampler({"x": [0, 1, 2]})
    s = optuna.create_study(study_name="g", storage=study.storage(url), sampler=grid)
    walks: list[int] = []
    real = optuna.samplers.GridSampler.is_exhausted

    def counted(self: optuna.samplers.GridSampler, st: optuna.Study) -> bool:
        walks.append(len(st.trials))
        return real(self, st)

    monkeypatch.setattr(optuna.samplers.GridSampler, "is_exhausted", counted)
    for _ in range(2):
        t = study.claim(s, url, n_trials=3)
        assert t is not None
        t.suggest_categorical("x", [0, 1, 2])
        s.tell(t, state=TrialState.FAIL)  # failed: the budget still wants three
    t = study.claim(s, url, n_trials=3)
    assert t is not None and walks == []
    t.suggest_categorical("x", [0, 1, 2])
    s.tell(t, state=TrialState.FAIL)
    assert study.claim(s, url, n_trials=3) is None  # every point used up, by failures
    assert walks == [3]


def test_a_zombie_worker_is_not_alive() -> None:
    """A worker killed with its parent stays a zombie until it is reaped; kill(pid, 0)
    still finds it, but its trials are lost and must be failed."""
    import os
    import time

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        assert not study._alive(proc.pid)  # exited, not reaped: a zombie
    finally:
        proc.wait()
    assert not study._alive(proc.pid)  # reaped: gone
    assert study._alive(os.getpid())


def test_a_storage_failing_in_the_middle_of_a_claim_keeps_the_trials_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retrying the whole claim would strand the trials already marked with this process:
    they are returned, and the error comes back with the next claim."""
    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="s", storage=study.storage(url))
    real_ask, asked = s.ask, []

    def ask(*args: object, **kwargs: object) -> optuna.Trial:
        if len(asked) == 2:
            raise OSError("storage away")
        asked.append(1)
        return real_ask()

    monkeypatch.setattr(s, "ask", ask)
    trials = study.claim_many(s, url, 10, 4)
    assert [t.number for t in trials] == [0, 1]
    assert all(study.PID_ATTR in t.user_attrs for t in s.trials)
    with pytest.raises(OSError, match="storage away"):
        study.claim_many(s, url, 10, 4)
