"""``python -m workers``: one worker process (what the supervisor starts N of)."""

from workers.command import worker

worker()
