"""Drives a running fivesafes server with the Python ADBC Flight SQL driver, as an analyst's
notebook would. Called by server/tests/server/adbc.rs with the server URL and tokens in the
environment; prints one JSON object with what it saw and exits non-zero on any surprise."""

import json
import os
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager

URI = os.environ["FIVESAFES_URI"]  # grpc://127.0.0.1:PORT
TOKEN = os.environ["FIVESAFES_ANALYST_TOKEN"]
PROJECT = os.environ.get("FIVESAFES_PROJECT", "diabetes-research")
EXPECTED_TABLES = set(os.environ["FIVESAFES_EXPECTED_TABLES"].split(","))

seen = {}


def connect(**extra):
    kwargs = {"adbc.flight.sql.rpc.call_header.x-fivesafes-project": PROJECT}
    kwargs.update(extra)
    return flightsql.connect(URI, db_kwargs=kwargs)


# 1. Bearer token and the project header.
with connect(**{"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}) as conn:
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    tables = set()
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                tables.add(table["table_name"])
    seen["tables"] = sorted(tables)
    assert tables == EXPECTED_TABLES, (tables, EXPECTED_TABLES)

    with conn.cursor() as cur:
        cur.execute("SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY sex")
        table = cur.fetch_arrow_table()
        seen["rows"] = table.num_rows
        seen["columns"] = table.column_names
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        seen["metadata"] = meta
        assert table.num_rows >= 1
        assert all(v is None or v % 5 == 0 for v in table.column("n").to_pylist())
        assert meta.get("fivesafes.rules_applied") == "FS-3,FS-4,FS-5,FS-6,FS-7", meta

    with conn.cursor() as cur:
        try:
            cur.execute("SELECT patient_id, birth_month FROM patients")
            cur.fetch_arrow_table()
            raise SystemExit("a query releasing rows about persons was accepted")
        except adbc_driver_manager.Error as e:
            text = str(e)
            seen["refusal"] = text
            assert "FS-1" in text, text

# 2. Basic credentials through the Flight handshake (user = principal, password = token).
with connect(username="analyst", password=TOKEN) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM practices")
        seen["basic_auth_rows"] = cur.fetch_arrow_table().num_rows

# 3. A wrong token is refused.
try:
    with connect(**{"adbc.flight.sql.authorization_header": "Bearer fs_wrong"}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM practices")
            cur.fetch_arrow_table()
    raise SystemExit("a wrong token was accepted")
except adbc_driver_manager.Error as e:
    seen["wrong_token"] = type(e).__name__ + ": " + str(e).splitlines()[0]
    assert "nauthenticated" in str(e) or "UNAUTHENTICATED" in str(e), str(e)

print(json.dumps(seen))
