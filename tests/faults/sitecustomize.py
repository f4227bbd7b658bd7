"""Fault injection for tests/test_faults.py, loaded by every Python process started with this folder
on PYTHONPATH (a study's runner, papermill, the training kernel) and acting only where ALLLIB_FAULT
names a fault. The fault fires once: it creates its `marker` file first, and a process that finds
the marker does nothing, so the same command run again is the recovery.

ALLLIB_FAULT (JSON): {"marker": path, "how": "kill" | "kill-all" | "exit" | "sleep", "at": one of
  {"batch": [epoch, batch]}           inside training, after that batch (both from 0)
  {"backup": [epoch, bytes]}          while the backup of that epoch (from 1) is written: its weights
                                      file cut to `bytes`, as a kill mid-write leaves it
  {"write": name}                     just before io.write_json writes a file of that name
}
and optionally "only_run": the start of the run id whose kernel the fault fires in (the runner tells
a kernel its run through ALLLIB_RUN_LOCK_HELD), "below": with kill-all, the pid of the test: every
ancestor process below it is killed (a kernel runs in a session of its own, so a process group is
not enough to take a study down at once), "seconds": with sleep, how long the run stalls there (a
window in which a test signals the job)."""

import json
import os
import signal
from pathlib import Path

SPEC = json.loads(os.environ.get("ALLLIB_FAULT") or "null")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _fire():
    if Path(SPEC["marker"]).exists():
        return
    if SPEC.get("only_run") and not os.environ.get("ALLLIB_RUN_LOCK_HELD", "").startswith(SPEC["only_run"]):
        return
    Path(SPEC["marker"]).write_text(str(os.getpid()))
    how = SPEC.get("how", "kill")
    if how == "sleep":
        import time

        time.sleep(SPEC["seconds"])
        return
    if how == "exit":  # the kernel dies (os._exit), its runner lives on
        os._exit(3)
    if how == "kill-all":  # the runner, papermill and the kernel at once, the top first
        chain, pid = [], _parent(os.getpid())
        while pid > 1 and pid != SPEC["below"]:
            chain.append(pid)
            pid = _parent(pid)
        for pid in reversed(chain):
            os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _install():
    at = SPEC["at"]
    try:
        from alllib import backup, io
        from alllib.method import training
    except ImportError:  # a process without the project (pip, a tool): nothing to inject
        return
    if "write" in at:
        real_write = io.write_json

        def write_json(path, obj):
            if Path(path).name == at["write"] and not Path(SPEC["marker"]).exists():
                _fire()
            return real_write(path, obj)

        io.write_json = write_json
    if "batch" in at:
        real_callbacks = training._callbacks

        def callbacks(*a, **k):
            import keras

            class Fault(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.epoch = epoch

                def on_train_batch_end(self, batch, logs=None):
                    if [self.epoch, batch] == at["batch"]:
                        _fire()

            return [Fault(), *real_callbacks(*a, **k)]

        training._callbacks = callbacks
    if "backup" in at:
        real_callback = backup.backup_callback

        def backup_callback(*a, **k):
            cb = real_callback(*a, **k)
            real_save = cb._save_model

            def save():
                real_save()
                if cb._current_epoch == at["backup"][0] and not Path(SPEC["marker"]).exists():
                    weights = Path(cb._weights_path)
                    with open(weights, "r+b") as fh:
                        fh.truncate(min(at["backup"][1], weights.stat().st_size))
                    _fire()

            cb._save_model = save
            return cb

        backup.backup_callback = backup_callback


if SPEC:
    _install()
