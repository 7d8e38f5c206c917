"""`flaskfleet-app` console script: migrate, check-config, version."""

from __future__ import annotations

import argparse
import json
import sys

from ._version import __version__
from .config import ConfigError, Settings

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"flaskfleet-app: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.json:
        print(json.dumps(settings.redacted(), indent=2, sort_keys=True))
    else:
        for key, value in settings.redacted().items():
            print(f"{key} = {value}")
    print("configuration OK", file=sys.stderr)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    from sqlalchemy.exc import SQLAlchemyError

    from .migrate import current_revision, upgrade

    try:
        before = current_revision(settings)
        after = upgrade(settings, args.revision)
    except SQLAlchemyError as exc:
        message = str(exc).splitlines()[0]
        for secret in settings.secrets():
            message = message.replace(secret, "***")
        print(f"flaskfleet-app migrate: failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILED
    if before == after:
        print(f"database already at revision {after}: nothing to do")
    else:
        print(f"database migrated from {before or 'empty'} to {after}")
    return 0


def cmd_version(_args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flaskfleet-app", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="upgrade the primary database schema (idempotent)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("check-config", help="validate the environment; exit 2 when invalid")
    p.add_argument("--json", action="store_true", help="print the (redacted) settings as JSON")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("version", help="print the package version")
    p.set_defaults(func=cmd_version)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
