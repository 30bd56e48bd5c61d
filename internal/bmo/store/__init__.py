"""The store (layer 2): the only package that imports aiosqlite.

One SQLite file, `BMO_HOME/bmo.db`, in WAL mode so that the server and the CLI can use it at the
same time. `db` opens it, `migrations` keeps its schema (append-only, numbered), `keys` owns the
API-key rows and `verifier` is the in-memory cache the server checks keys against.

Modules here import `bmo.errors` and the standard library only; never server, cli, service or
runtime (the runtime wires the store in, the CLI opens it directly).
"""
