"""The ``privflow-client`` command line: create a dataset from CSV, create and grant keys,
request a release, show a budget. Results are JSON on stdout; errors go to stderr.

Column types and bounds are public and must be declared — by ``--float NAME:LOWER:UPPER`` and
``--category NAME:A,B,C`` flags (in column order) or a JSON schema file (``--schema``) holding
``{"columns": [...]}`` as in API.md — never inferred from the records: bounds or categories read
off the data would leak it. The CSV's header names the columns; columns not declared are left
out (and named on stderr).

``--field id`` (any subcommand) prints one field of the result instead, for shell scripts.
Floats are printed to 12 significant digits (``0.1``, not ``0.09999999999999999``).

Exit status: 0 done, 1 the service refused (the problem's ``code`` is printed), 2 bad usage or
an unreadable CSV/schema file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from privflow_client._client import Client
from privflow_client._csv import UsageError, read_csv, read_header, read_schema
from privflow_client._display import rounded
from privflow_client._errors import PrivflowError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``privflow-client`` with ``argv`` (``sys.argv[1:]`` when None); the exit status."""
    args = _parser().parse_args(argv)
    try:
        with Client(args.url, args.api_key) as client:
            result = args.handler(client, args)
        text = _output(result, args.field)
    except UsageError as exc:
        print(f"privflow-client: {exc}", file=sys.stderr)
        return 2
    except PrivflowError as exc:
        problem = {"code": exc.code, "status": exc.status, "detail": exc.detail}
        if exc.errors:
            problem["errors"] = exc.errors
        print(json.dumps(problem, indent=2), file=sys.stderr)
        return 1
    print(text)
    return 0


def _output(result: Any, field: str | None) -> str:
    """The result as JSON, or only ``field`` (a dotted path; a string is printed bare).

    Floats are printed to 12 significant digits (``_display``): ``0.1``, not
    ``0.09999999999999999``; the SDK and the REST API keep the exact values."""
    result = rounded(result)
    if field is None:
        return json.dumps(result, indent=2)
    value = result
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UsageError(f"the result has no field {field!r}")
        value = value[part]
    return value if isinstance(value, str) else json.dumps(value)


class _ColumnFlag(argparse.Action):
    """``--float`` and ``--category`` append to one list, so their order is the column order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        spec = str(values)
        if self.const == "float":
            parts = spec.split(":")
            if len(parts) != 3:
                parser.error(f"--float wants NAME:LOWER:UPPER, got {spec!r}")
            try:
                column = {"name": parts[0], "type": "float", "lower": float(parts[1])}
                column["upper"] = float(parts[2])
            except ValueError:
                parser.error(f"--float bounds must be numbers, got {spec!r}")
        else:
            name, _, categories = spec.partition(":")
            if not name or not categories:
                parser.error(f"--category wants NAME:A,B,C, got {spec!r}")
            column = {"name": name, "type": "category", "categories": categories.split(",")}
        columns = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, [*columns, column])


def _create_dataset(client: Client, args: argparse.Namespace) -> Any:
    if args.schema and args.columns:
        raise UsageError("give columns either by --schema or by --float/--category, not both")
    columns = read_schema(args.schema) if args.schema else args.columns
    if not columns:
        raise UsageError("declare the columns: --float NAME:LOWER:UPPER, --category NAME:A,B")
    records = read_csv(args.csv, columns)
    skipped = [name for name in read_header(args.csv) if name not in {c["name"] for c in columns}]
    if skipped:
        print(f"privflow-client: leaving out CSV columns {', '.join(skipped)}", file=sys.stderr)
    dataset = client.datasets.create(
        args.name or args.csv.stem,
        columns,
        records,
        epsilon=args.epsilon,
        delta=args.delta,
        neighbouring=args.neighbouring,
        size_bound=args.size_bound,
        accountant=args.accountant,
    )
    return dataset.model_dump(mode="json")


def _create_key(client: Client, args: argparse.Namespace) -> Any:
    return client.keys.create(args.name, args.role).model_dump(mode="json")


def _grant(client: Client, args: argparse.Namespace) -> Any:
    grant = client.datasets.grant(
        args.dataset, args.key_id, epsilon_cap=args.epsilon_cap, delta_cap=args.delta_cap
    )
    return grant.model_dump(mode="json")


def _release(client: Client, args: argparse.Namespace) -> Any:
    try:
        utility = json.loads(args.utility)
    except ValueError as exc:
        raise UsageError(f"--utility is not JSON: {exc}") from None
    sampler = {k: v for k, v in (("particles", args.particles), ("step_size", args.step_size)) if v}
    options: dict[str, Any] = {
        "epsilon": args.epsilon,
        "delta": args.delta,
        "n_samples": args.n_samples,
        "method": args.method,
        "sampler": sampler or None,
        "idempotency_key": args.idempotency_key,
    }
    if args.run_async or args.progress:
        job = client.releases.submit(args.dataset, utility, **options)
        release = job.release(args.timeout, progress=args.progress)
    else:
        release = client.releases.create(args.dataset, utility, **options)
    return release.model_dump(mode="json")


def _budget(client: Client, args: argparse.Namespace) -> Any:
    dataset = client.datasets.get(args.dataset)
    return {"dataset_id": dataset.id, "name": dataset.name, **dataset.budget.model_dump()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privflow-client",
        description="Command line for the privflow service (speaks only its REST API).",
    )
    parser.add_argument("--url", help="service URL (PRIVFLOW_URL, default http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="API key (PRIVFLOW_API_KEY)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--field", help="print only this field of the result (e.g. id, key, remaining.epsilon)"
    )

    ds = commands.add_parser(
        "create-dataset", parents=[output], help="register a dataset from a CSV file (admin)"
    )
    ds.add_argument("csv", type=Path, help="CSV file with a header row")
    ds.add_argument("--name", help="dataset name (default: the file's stem)")
    ds.add_argument("--epsilon", type=float, required=True, help="total epsilon budget")
    ds.add_argument("--delta", type=float, default=0.0, help="total delta budget (default 0)")
    ds.add_argument("--schema", type=Path, help='JSON file: {"columns": [...]} as in API.md')
    ds.add_argument(
        "--float",
        dest="columns",
        action=_ColumnFlag,
        const="float",
        metavar="NAME:LOWER:UPPER",
        help="a numeric column and its public bounds",
    )
    ds.add_argument(
        "--category",
        dest="columns",
        action=_ColumnFlag,
        const="category",
        metavar="NAME:A,B,C",
        help="a categorical column and its categories",
    )
    ds.add_argument("--neighbouring", choices=("add_remove", "replace_one"))
    ds.add_argument("--size-bound", type=int, help="public bound on the number of records")
    ds.add_argument("--accountant", choices=("pure", "union"))
    ds.set_defaults(handler=_create_dataset, columns=[])

    key = commands.add_parser(
        "create-key", parents=[output], help="create an API key; prints its secret once"
    )
    key.add_argument("--name", required=True)
    key.add_argument("--role", choices=("analyst", "admin"), default="analyst")
    key.set_defaults(handler=_create_key)

    grant = commands.add_parser(
        "grant", parents=[output], help="let a key release from a dataset (admin)"
    )
    grant.add_argument("dataset", help="dataset id")
    grant.add_argument("key_id", help="id of the key (not its secret)")
    grant.add_argument("--epsilon-cap", type=float)
    grant.add_argument("--delta-cap", type=float)
    grant.set_defaults(handler=_grant)

    rel = commands.add_parser(
        "release", parents=[output], help="request a private release; prints it as JSON"
    )
    rel.add_argument("dataset", help="dataset id")
    rel.add_argument(
        "--utility",
        required=True,
        help='JSON, e.g. \'{"family": "quantile", "column": "age", "q": 0.5}\'',
    )
    rel.add_argument("--epsilon", type=float, required=True, help="epsilon this release spends")
    rel.add_argument("--delta", type=float)
    rel.add_argument("--n-samples", type=int)
    rel.add_argument("--method", choices=("shk", "exact"))
    rel.add_argument("--particles", type=int)
    rel.add_argument("--step-size", type=float)
    rel.add_argument("--idempotency-key", help="reuse to make a re-run charge nothing more")
    rel.add_argument(
        "--async", dest="run_async", action="store_true", help="run as a job and wait for it"
    )
    rel.add_argument("--progress", action="store_true", help="job progress bar on stderr")
    rel.add_argument("--timeout", type=float, help="seconds to wait for the job")
    rel.set_defaults(handler=_release)

    budget = commands.add_parser(
        "budget", parents=[output], help="show a dataset's budget: total, spent, remaining"
    )
    budget.add_argument("dataset", help="dataset id")
    budget.set_defaults(handler=_budget)
    return parser
