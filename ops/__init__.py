"""What operators look at and act on: the dead-letter queue and the live dashboard.

The roles do the work; these surfaces show it and mend it.  They may use the roles (the dashboard is
served by the batch API under its keys, and shows its batch checks in its shape), and no role imports
them: ``recalls api`` hands the dashboard to the batch API's app, and ``recalls dlq`` drives the
dead-letter queue (docs/design.md, D42).
"""
