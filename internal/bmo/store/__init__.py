"""The store (layer 2): the only package that imports aiosqlite and asyncpg.

Two backends behind one surface (`backend`: `Db`, `Tx`, `make_store`, `open_store`), chosen by
`store.url`: SQLite, one file `BMO_HOME/bmo.db` in WAL mode so that the server and the CLI can use
it at the same time (`db`, its schema in `migrations`); or PostgreSQL, which several replicas
share (`pg`, its schema in `pg_migrations`; asyncpg is imported only then). Statements are
written once (`?` placeholders); what differs is in `dialect`. Above that surface: `keys` owns
the API-key rows and `verifier` is the in-memory cache the server checks keys against; `sessions`,
`leases`, `responses`, `ledger` and `workers` own theirs; `copy` moves one store into another
(`bmo store migrate`).

Modules here import `bmo.errors` and the standard library only; never server, cli, service or
runtime (the runtime wires the store in, the CLI opens it directly).
"""
