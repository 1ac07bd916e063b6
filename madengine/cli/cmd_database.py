"""`madengine database create-table | update-table | upload-mongodb`: ROCm madengine's commands that put
perf.csv rows in a database (DESIGN §8: the familiar commands). The work is in madengine/compat/
rocm_database.py and rocm_mongodb.py; what differs from ROCm's, and why, is said there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from madengine.compat import rocm_mongodb

DbUrlOption = typer.Option(None, "--db-url", metavar="URL",
                           help="postgresql://USER@HOST:PORT/NAME, sqlite:///FILE or a SQLite file. "
                           "Default: TUNA_DB_* (PostgreSQL), else .madengine/perf.db.")
CsvOption = typer.Option(Path("perf.csv"), "--csv-file-path", metavar="FILE",
                         help="The perf.csv to upload.")


def register(app: typer.Typer) -> None:
    database_app = typer.Typer(name="database", help="Put perf.csv rows in a database (ROCm madengine's commands).",
                               no_args_is_help=True, rich_markup_mode=None)
    database_app.command("create-table")(create_table)
    database_app.command("update-table")(update_table)
    database_app.command("upload-mongodb")(upload_mongodb)
    app.add_typer(database_app, name="database")


def create_table(db_url: str | None = DbUrlOption) -> None:
    """Create ROCm's perf table, dlm_table (or the columns an older one lacks); nothing if it is there.

    The database: --db-url, else ROCm's TUNA_DB_* variables (TUNA_DB_HOSTNAME, TUNA_DB_PORT [5432],
    TUNA_DB_NAME [dlm_db], TUNA_DB_USER_NAME, TUNA_DB_USER_PASSWORD: a PostgreSQL server; the password
    is never printed), else the SQLite file .madengine/perf.db here (madengine's state database keeps
    madengine's tables only).
    """
    import os
    import sys

    from madengine.compat import rocm_database as rdb

    target = rdb.sql_target(db_url, os.environ, Path.cwd())
    created = rdb.create_table(target)
    sys.stdout.write(f"{rdb.TABLE} in {target.shown()}: " + (f"created {', '.join(created)}\n" if created
                                                            else "already there\n"))


def update_table(csv_file_path: Path = CsvOption, db_url: str | None = DbUrlOption) -> None:
    """Add the rows of a perf.csv to ROCm's perf table, dlm_table (created if needed).

    Only rows the table does not have yet are added (a row already stored, equal in every column but
    relative_change, is not added again: running it twice, or on a perf.csv later runs append to, adds no
    duplicate). relative_change is ROCm's: the row against the average of the last 5 successful rows of
    its model, base image and each GPU architecture in the table. perf.csv columns the table does not
    have are named and not stored.

    The database: --db-url, else ROCm's TUNA_DB_* variables (TUNA_DB_HOSTNAME, TUNA_DB_PORT [5432],
    TUNA_DB_NAME [dlm_db], TUNA_DB_USER_NAME, TUNA_DB_USER_PASSWORD: a PostgreSQL server; the password
    is never printed), else the SQLite file .madengine/perf.db here (madengine's state database keeps
    madengine's tables only).
    """
    import os
    import sys

    from madengine.cli import output
    from madengine.compat import rocm_csv
    from madengine.compat import rocm_database as rdb
    from madengine.errors import Diagnostic

    shown = str(csv_file_path)
    _check_file(csv_file_path)
    records, not_stored = rdb.perf_records(rocm_csv.read_csv(csv_file_path, shown, required=("model",)))
    target = rdb.sql_target(db_url, os.environ, Path.cwd())
    if not_stored:
        output.warn([Diagnostic(shown, 1, None, f"not stored (no such column in {rdb.TABLE}): "
                                + ", ".join(not_stored), severity="warning")])
    done = rdb.update_table(target, records)
    made = f"created {', '.join(done.created)}; " if done.created else ""
    sys.stdout.write(f"{rdb.TABLE} in {target.shown()}: {made}{done.added} row{'s' if done.added != 1 else ''} "
                     f"added, {done.already} already there\n")


def upload_mongodb(
    csv_file_path: Path = typer.Option(Path("perf.csv"), "--csv-file-path", "--file", "-f", metavar="FILE",
                                       help="The perf.csv to upload."),
    database_name: str = typer.Option(..., "--database-name", "--database", "--db", metavar="NAME",
                                      help="The MongoDB database."),
    collection_name: str = typer.Option(..., "--collection-name", "--collection", "-c", metavar="NAME",
                                        help="The collection."),
    db_url: str | None = typer.Option(None, "--db-url", metavar="URL",
                                      help="mongodb://HOST:PORT (credentials in it, or MONGO_USER and "
                                      "MONGO_PASSWORD). Default: MONGO_HOST [localhost] and MONGO_PORT [27017]."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, metavar="N",
                                   help="Rows per bulk write."),
) -> None:
    """Upsert a document per perf.csv row into a MongoDB collection (ROCm's upload-mongodb).

    Each document has a field per column (numbers as numbers, empty cells null), created_date (first
    upload, UTC) and _meta_uploaded_at. Its _id is the hash of the row's cells and its occurrence among
    equal rows: uploading the same perf.csv again, or one later runs appended to, adds no duplicate.
    Needs pymongo (pip install 'madengine[mongodb]').
    """
    import os
    import sys

    from madengine.compat import rocm_csv
    from madengine.compat import rocm_mongodb as rmg
    from madengine.errors import StateError, UsageError

    _check_file(csv_file_path)
    for option, name in (("--database-name", database_name), ("--collection-name", collection_name)):
        if not name or "\0" in name or name.startswith("$") or (option == "--database-name" and any(
                c in name for c in '/\\. "$')):
            raise UsageError(f"{option} {name!r} is not a MongoDB name")
    table = rocm_csv.read_csv(csv_file_path, str(csv_file_path), required=("model",))
    now = rmg.now_utc()
    operations = rmg.upserts(rmg.documents(table, now), now)
    target = rmg.mongo_target(db_url, os.environ)
    try:
        import pymongo
        from pymongo import errors
    except ImportError:
        raise UsageError("upload-mongodb needs pymongo", hint="pip install 'madengine[mongodb]'") from None
    try:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            target.url, serverSelectionTimeoutMS=5000, **target.client_options())
    except (errors.ConfigurationError, ValueError, TypeError) as exc:
        raise UsageError(f"--db-url {target.shown()}: {_first_line(exc, target)}") from None
    try:
        client.admin.command("ping")
        done = rmg.upload(client[database_name][collection_name], operations, batch_size)
    except errors.BulkWriteError as exc:
        first = (exc.details.get("writeErrors") or [{}])[0].get("errmsg", str(exc))
        raise StateError(f"{target.shown()}: {database_name}.{collection_name} refused rows: {first}") from None
    except errors.PyMongoError as exc:
        raise StateError(f"cannot upload to {target.shown()}: {_first_line(exc, target)}",
                         hint="check the URL (or MONGO_*), that the server runs, and the credentials") from None
    finally:
        client.close()
    sys.stdout.write(f"{database_name}.{collection_name} in {target.shown()}: {done.added} document"
                     f"{'s' if done.added != 1 else ''} added, {done.already} already there\n")


def _first_line(exc: BaseException, target: rocm_mongodb.MongoTarget) -> str:
    """The first line of a driver's message, without a password (the URL's, or MONGO_PASSWORD)."""
    import urllib.parse

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    try:
        in_url = urllib.parse.urlsplit(target.url).password
    except ValueError:
        in_url = None
    for secret in (target.password, in_url):
        if secret:
            text = text.replace(secret, "***")
    return text


def _check_file(path: Path) -> None:
    from madengine.errors import UsageError

    if not path.exists():
        raise UsageError(f"--csv-file-path {path}: no such file", hint="give the perf.csv that runs wrote")
