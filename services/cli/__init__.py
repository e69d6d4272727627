"""The command-line room: `yingji` (main.py: the parser and `classify`; service.py: run, worker,
topics, user, report; drill.py: drill validate, eval, run)."""
