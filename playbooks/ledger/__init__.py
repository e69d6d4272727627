"""The 迟报/漏报/瞒报 ledger (5.5.2) and its 通报 (5.5.1): `config` is playbooks/data/ledger.yaml as a
model, `rules` the pure ledger (an incident's events and `now` in, rows with reasons out), `circular`
the draft 通报 and its 限期整改 obligations."""
