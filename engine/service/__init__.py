"""`policykb serve`: the HTTP API (FastAPI) and the paste-a-claim page, from one process.

config.py       limits and options (one frozen dataclass)
problems.py     RFC 9457 problem details: every error a client sees
negotiation.py  Content-Type -> claim reader, Accept -> renderer (the one table)
catalog.py      what the KB knows of rules and codes (a KB on one thread of this process)
workers.py      adjudication off the event loop, in worker processes that load the KB once
app.py          the routes
static/         the page: plain HTML, CSS and a little JavaScript, no build step
"""
