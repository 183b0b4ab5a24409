"""``python -m recalls.workers``: one worker process (what the supervisor starts N of)."""

from recalls.workers.command import worker

worker()
