"""The web edge: the API process's HTTP API and pages, one router per resource.

app.py          create_app: the composition root (settings, plan, clock, sealer, read model, users,
                publisher), the lifespan that starts them, and the error answers
state.py        what handlers read from the app (FastAPI dependencies over app.state)
permissions.py  who may do what: one table of permissions by role
auth.py         the sign-in dependencies enforcing it (bearer header or cookie; pages redirect)
answers.py      the error bodies and the OpenAPI entries that declare them
publisher.py    the one Kafka producer, and BrokerUnavailable when it cannot write
openapi.py      /openapi.json with the plan's vocabulary as enums
board.py        what the board shows (rows, snapshots, changes) and its event stream
rendering.py    Jinja2 templates (templates/) and the static assets (static/) of the pages
routes/         incidents, commands (filings, approvals, end), drills, users, health,
                signin, pages, board stream: handlers at module level; params.py: path ids
"""
