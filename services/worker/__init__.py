"""The worker room: one Faust worker process.

- root.py: the composition root (settings, clock, plan, app, table, schedule, watchdog; overrides for tests)
- main.py: `yingji worker`
- incidents.py: the agent (reports, commands, due ticks in; the lifecycle's outcome out)
- outbox.py: the batch and its commit (outputs acknowledged, then the table written)
- schedule.py: the due schedule and the sweep that sends due ticks
- handover.py: the 交接班 timer; rectification.py: the 通报's 限期整改 timer (reminder, 督办)
- table_codec.py, faust_app.py, consumer_fetch.py, watchdog.py, gauges.py, gcwatch.py, deadletter.py
"""
