"""Progress in logs: plain lines every few per cent without a terminal, a tqdm bar on one."""

from __future__ import annotations

import io
from typing import ClassVar

from regionmed.progress import LOG_EVERY_PERCENT, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_a_line_every_few_percent_and_no_carriage_returns():
    log = io.StringIO()
    assert list(progress(range(1000), 1000, "build", "img", stream=log)) == list(range(1000))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 100 // LOG_EVERY_PERCENT  # 10%, 20%, ... 90%, then the end
    assert lines[0].startswith("build: 100/1000 img (10%") and "1000/1000 img done" in lines[-1]


def test_on_a_terminal_a_bar_and_when_disabled_nothing():
    tty = Terminal()
    list(progress(range(50), 50, "build", stream=tty))
    assert "\r" in tty.getvalue() and "50/50" in tty.getvalue()
    quiet = io.StringIO()
    assert list(progress(range(5), 5, "build", enabled=False, stream=quiet)) == list(range(5))
    assert quiet.getvalue() == ""


def test_training_logs_a_line_every_few_percent_of_the_steps(capsys):
    from regionmed.training.train import LogProgress

    class Trainer:
        callback_metrics: ClassVar[dict[str, float]] = {"train/loss": 1.5}
        global_step = 0

    callback, trainer = LogProgress(200), Trainer()
    for step in range(1, 201):
        trainer.global_step = step
        for _ in range(2):  # two micro-batches per optimizer step (accumulate_grad_batches)
            callback.on_train_batch_end(trainer, None, None, None, 0)
    lines = capsys.readouterr().err.splitlines()
    assert (
        len(lines) == 10 and lines[0].startswith("step 20/200 (10%, loss 1.5000") and "200/200" in lines[-1]
    )
