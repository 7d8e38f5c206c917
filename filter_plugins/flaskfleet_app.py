"""The app contract: how a user describes their Flask application to flaskfleet.

``flaskfleet_app`` in the inventory (group_vars/all) is one mapping; this module
checks it and fills in what was left out. Without ``flaskfleet_app`` the project's
own sample (app_src/) is deployed: ``SAMPLE_APP`` is its description, written in
the same contract a user writes. docs/app-contract.md is the user's reference;
tests/test_app_contract.py checks every rule here.

``flaskfleet_app_contract`` returns the complete description (or fails naming every
problem), ``flaskfleet_app_problems`` is the preflight's list of problems, and
``flaskfleet_app_env`` maps the wiring values (database, Redis, secret key,
release) onto the environment variable names the application reads.
"""

from __future__ import annotations

import json
import os
import re
import shlex

try:  # Ansible is not needed to unit-test the pure functions.
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

# What the application can receive, by wiring name (the keys of flaskfleet_app.env).
WIRING = {
    "database_url": "URL of the PostgreSQL primary (every database host; the writable one wins)",
    "replica_urls": "URLs of the read replicas (formatted by replica_urls_format)",
    "cache_url": "Redis URL of the cache instance (database 0)",
    "broker_url": "Redis URL of the Celery broker instance (database 0)",
    "result_backend": "Redis URL for Celery results (broker instance, database 1)",
    "secret_key": "the Flask secret key (flaskfleet_secret_key)",
    "release": "the release name (<version>-<content id>)",
}

# The gunicorn server hooks the contract may name (https://docs.gunicorn.org/en/stable/settings.html).
GUNICORN_HOOKS = (
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_int",
    "worker_abort",
    "pre_exec",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
)

# gunicorn for apps that do not pin their own (an app's own pin always wins).
GUNICORN_REQUIREMENT = "gunicorn==27.0.1"

# Fields left out of a user's flaskfleet_app take these values (none of them the sample's).
GENERIC = {
    "source": None,
    "kind": "auto",
    "distribution": "",
    "version": "",
    "requirements": "",
    "wsgi": None,
    "celery": "",
    "migrate": [],
    "check_config": [],
    "health": {"path": "/", "status": 200, "version_field": ""},
    "env": {},
    "replica_urls_format": "joined",
    "extra_env": {},
    "database_scheme": "postgresql+psycopg",
    "static": {"dir": "", "url": "/static/"},
    "system_packages": [],
    "gunicorn": {"hooks": {}, "requirement": GUNICORN_REQUIREMENT},
    "private_paths": ["/metrics"],
}

# The sample application (app_src/), described with the contract.
SAMPLE_APP = {
    "source": {"path": "app_src"},
    "requirements": "requirements.lock",
    "wsgi": "flaskfleet_app.wsgi:app",
    "celery": "flaskfleet_app.celery_app",
    "migrate": ["flaskfleet-app", "migrate"],
    "check_config": ["flaskfleet-app", "check-config"],
    "health": {"path": "/healthz", "status": 200, "version_field": "version"},
    "env": {
        "database_url": "FLASKFLEET_DATABASE_URL",
        "replica_urls": "FLASKFLEET_REPLICA_URLS",
        "cache_url": "FLASKFLEET_CACHE_URL",
        "broker_url": "FLASKFLEET_BROKER_URL",
        "secret_key": "FLASKFLEET_SECRET_KEY",
        "release": "FLASKFLEET_RELEASE",
    },
    "static": {"dir": "flaskfleet_app/static", "url": "/static/"},
    "gunicorn": {"hooks": {"child_exit": "flaskfleet_app.metrics:child_exit"}},
    # Metrics and readiness details, a slow endpoint that holds a thread and the job
    # endpoints that queue work: not on the public listener.
    "private_paths": ["/metrics", "/readyz", "/api/slow", "/api/jobs"],
}

_PY_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = rf"{_PY_NAME}(?:\.{_PY_NAME})*"
# module, module:attr, module:attr.attr or module:factory(...) (as gunicorn accepts it).
_WSGI = re.compile(rf"^{_MODULE}(?::{_PY_NAME}(?:\.{_PY_NAME})*(?:\(.*\))?)?$")
_CELERY = re.compile(rf"^{_MODULE}(?::{_PY_NAME}(?:\.{_PY_NAME})*)?$")
_HOOK = re.compile(rf"^{_MODULE}:{_PY_NAME}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEB_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[a-z0-9_]+)?$")
_URL_PATH = re.compile(r"^/(?:[A-Za-z0-9._~-]+/)*$")
_SOURCE_KEYS = {"path", "git", "ref", "wheelhouse"}
_PRIVATE_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")


def _argv(value, field, problems):
    """A command as an argv list (a string is split like a shell would)."""
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            problems.append(f"flaskfleet_app.{field}: {exc} (give a list of arguments)")
            return []
    if isinstance(value, (list, tuple)) and all(isinstance(a, (str, int)) for a in value):
        return [str(a) for a in value]
    problems.append(
        f"flaskfleet_app.{field} must be a command: a list of arguments such as "
        '["flask", "--app", "myapp", "db", "upgrade"]'
    )
    return []


def _merge(user: dict) -> dict:
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GENERIC.items()}
    for key, value in user.items():
        if key in ("health", "static", "gunicorn") and isinstance(value, dict):
            spec[key] = {**GENERIC[key], **value}
        else:
            spec[key] = value
    return spec


def _source_problems(source, project_root, problems) -> dict:
    if not isinstance(source, dict) or not source:
        problems.append(
            "flaskfleet_app.source is required: {path: <project directory>}, "
            "{git: <url>, ref: <branch|tag|commit>} or {wheelhouse: <directory of wheels>}"
        )
        return {}
    unknown = sorted(set(source) - _SOURCE_KEYS)
    if unknown:
        problems.append(
            f"flaskfleet_app.source: unknown key(s) {', '.join(unknown)} "
            "(use path, git + ref, or wheelhouse)"
        )
    kinds = [k for k in ("path", "git", "wheelhouse") if source.get(k)]
    if len(kinds) != 1:
        problems.append(
            "flaskfleet_app.source needs exactly one of path, git or wheelhouse "
            f"(got {', '.join(kinds) or 'none'})"
        )
        return {}
    kind = kinds[0]
    resolved = dict(source)
    if kind == "git":
        if not str(source.get("ref") or ""):
            problems.append(
                "flaskfleet_app.source.ref is required with git: the branch, tag or commit"
            )
        return resolved
    path = str(source[kind])
    if not os.path.isabs(path):
        path = os.path.normpath(os.path.join(str(project_root), path))
    resolved[kind] = path
    if not os.path.isdir(path):
        problems.append(
            f"flaskfleet_app.source.{kind}: {path} is not a directory on the controller "
            "(a relative path is taken from the project's root, where site.yml is)"
        )
    elif kind == "wheelhouse" and not any(n.endswith(".whl") for n in os.listdir(path)):
        problems.append(f"flaskfleet_app.source.wheelhouse: {path} holds no .whl file")
    return resolved


def _project_problems(spec, source, problems):
    """A path source must be a project or a tree with its requirements file."""
    path = source.get("path")
    if not path or not os.path.isdir(path):
        return
    is_project = any(os.path.isfile(os.path.join(path, f)) for f in ("pyproject.toml", "setup.py"))
    requirements = spec["requirements"] or ("" if is_project else "requirements.txt")
    if spec["kind"] == "project" and not is_project:
        problems.append(
            f"flaskfleet_app.kind is project but {path} has no pyproject.toml or setup.py"
        )
    if not is_project and spec["kind"] != "project":
        if not os.path.isfile(os.path.join(path, requirements)):
            problems.append(
                f"flaskfleet_app.source.path: {path} is neither a Python project "
                f"(pyproject.toml/setup.py) nor a source tree with {requirements}"
            )
    elif requirements and not os.path.isfile(os.path.join(path, requirements)):
        problems.append(f"flaskfleet_app.requirements: {requirements} is not a file in {path}")


def _known_names(mapping: dict, field: str, known, hint: str, problems: list[str]) -> None:
    """Every key of mapping is one of known."""
    for key in mapping:
        if key not in known:
            problems.append(f"flaskfleet_app.{field}.{key}: {hint} {', '.join(known)}")


def _pattern_values(mapping: dict, field: str, pattern, hint: str, problems: list[str]) -> None:
    """Every value of mapping is a string matching pattern."""
    for key, value in mapping.items():
        if not isinstance(value, str) or not pattern.match(value):
            problems.append(f"flaskfleet_app.{field}.{key}={value!r} {hint}")


def _record(spec: dict, key: str, problems: list[str]) -> dict:
    """A sub-mapping of the contract (health, static, gunicorn): a mapping with known keys."""
    value = spec[key]
    fields = ", ".join(GENERIC[key])
    if not isinstance(value, dict):
        problems.append(f"flaskfleet_app.{key} must be a mapping: {{{fields}}}")
        spec[key] = value = dict(GENERIC[key])
    unknown = sorted(set(value) - set(GENERIC[key]))
    if unknown:
        problems.append(
            f"flaskfleet_app.{key}: unknown key(s) {', '.join(unknown)} (known: {fields})"
        )
    return value


def _check(spec: dict, project_root, with_workers: bool) -> tuple[dict, list[str]]:
    problems: list[str] = []
    unknown = sorted(set(spec) - set(GENERIC))
    if unknown:
        problems.append(
            f"flaskfleet_app: unknown key(s) {', '.join(unknown)}; "
            f"the contract has {', '.join(sorted(GENERIC))}"
        )
    spec["source"] = _source_problems(spec["source"], project_root, problems)
    if spec["kind"] not in ("auto", "project", "tree"):
        problems.append(f"flaskfleet_app.kind={spec['kind']!r}: use auto, project or tree")
    else:
        _project_problems(spec, spec["source"], problems)
    if spec["source"].get("wheelhouse") and not spec["distribution"]:
        problems.append(
            "flaskfleet_app.distribution is required with a wheelhouse source: "
            "the name of the application's wheel"
        )
    for field in ("distribution", "version", "requirements", "celery", "database_scheme"):
        if not isinstance(spec[field], str):
            problems.append(f"flaskfleet_app.{field} must be a string")
            spec[field] = ""
    if spec["version"] and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", spec["version"]):
        problems.append(
            f"flaskfleet_app.version={spec['version']!r}: letters, digits, '.', '_', '+', '-' only"
        )
    wsgi = spec["wsgi"]
    if not wsgi:
        problems.append(
            "flaskfleet_app.wsgi is required: the WSGI application as gunicorn takes it, "
            "e.g. myapp.wsgi:app or 'myapp:create_app()'"
        )
    elif not isinstance(wsgi, str) or not _WSGI.match(wsgi):
        problems.append(
            f"flaskfleet_app.wsgi={wsgi!r} is not a WSGI target: module:attribute "
            "or module:factory() (e.g. myapp.wsgi:app, 'myapp:create_app()')"
        )
    if spec["celery"] and not _CELERY.match(spec["celery"]):
        problems.append(
            f"flaskfleet_app.celery={spec['celery']!r} is not a Celery app target "
            "(module or module:attribute, as for celery -A)"
        )
    if with_workers and not spec["celery"]:
        problems.append(
            "the inventory has hosts in the workers group but flaskfleet_app.celery is empty: "
            "name the Celery app (module:attribute) or leave the workers group empty"
        )
    spec["migrate"] = _argv(spec["migrate"], "migrate", problems)
    spec["check_config"] = _argv(spec["check_config"], "check_config", problems)

    health = _record(spec, "health", problems)
    if not str(health.get("path", "")).startswith("/"):
        problems.append(
            f"flaskfleet_app.health.path={health.get('path')!r} must start with / "
            "(a page every instance answers without a database, e.g. /)"
        )
    try:
        health["status"] = int(health.get("status"))
        if not 100 <= health["status"] <= 599:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(
            f"flaskfleet_app.health.status={health.get('status')!r} is not an HTTP status code"
        )
    if not isinstance(health.get("version_field"), str):
        problems.append("flaskfleet_app.health.version_field must be a string ('' = none)")

    env = spec["env"]
    if not isinstance(env, dict):
        problems.append("flaskfleet_app.env must be a mapping: wiring value -> variable name")
        spec["env"] = env = {}
    _known_names(env, "env", WIRING, "unknown wiring value; the wiring values are", problems)
    _pattern_values(env, "env", _ENV_NAME, "is not an environment variable name", problems)
    if spec["replica_urls_format"] not in ("joined", "json", "numbered"):
        problems.append(
            f"flaskfleet_app.replica_urls_format={spec['replica_urls_format']!r}: use joined "
            "(comma-separated), json (a JSON list) or numbered (NAME_1, NAME_2, ...)"
        )
    extra = spec["extra_env"]
    if not isinstance(extra, dict):
        problems.append("flaskfleet_app.extra_env must be a mapping: variable name -> value")
        spec["extra_env"] = extra = {}
    for name in extra:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            problems.append(
                f"flaskfleet_app.extra_env: {name!r} is not an environment variable name"
            )
    if not _SCHEME.match(spec["database_scheme"]):
        problems.append(
            f"flaskfleet_app.database_scheme={spec['database_scheme']!r}: a PostgreSQL URL scheme "
            "such as postgresql+psycopg, postgresql+psycopg2 or postgresql"
        )

    private = spec["private_paths"]
    if not isinstance(private, list) or any(
        not isinstance(p, str) or not _PRIVATE_PATH.match(p) or p == "/" for p in private
    ):
        problems.append(
            f"flaskfleet_app.private_paths={private!r}: a list of path prefixes the public "
            "listener refuses, e.g. [/metrics, /admin] (letters, digits, . _ ~ - /; not / itself)"
        )
        spec["private_paths"] = []
    static = _record(spec, "static", problems)
    static_dir = str(static.get("dir") or "")
    if static_dir.startswith("/") or ".." in static_dir.split("/"):
        problems.append(
            f"flaskfleet_app.static.dir={static_dir!r}: a folder relative to the import root, "
            "e.g. myapp/static"
        )
    if not _URL_PATH.match(str(static.get("url", ""))) or static.get("url") == "/":
        problems.append(
            f"flaskfleet_app.static.url={static.get('url')!r}: a URL prefix that starts and ends "
            "with / (not / itself), e.g. /static/"
        )
    packages = spec["system_packages"]
    if not isinstance(packages, list) or not all(
        isinstance(p, str) and _DEB_PACKAGE.match(p) for p in packages
    ):
        problems.append("flaskfleet_app.system_packages must be a list of Debian package names")
        spec["system_packages"] = []

    gunicorn = _record(spec, "gunicorn", problems)
    if not isinstance(gunicorn.get("hooks"), dict):
        problems.append("flaskfleet_app.gunicorn.hooks must be a mapping: hook -> module:function")
        gunicorn["hooks"] = {}
    hooks = gunicorn["hooks"]
    _known_names(hooks, "gunicorn.hooks", GUNICORN_HOOKS, "not a gunicorn server hook:", problems)
    _pattern_values(hooks, "gunicorn.hooks", _HOOK, "- give module:function", problems)
    if not isinstance(gunicorn.get("requirement"), str) or not gunicorn["requirement"]:
        problems.append(
            "flaskfleet_app.gunicorn.requirement: a requirement such as gunicorn==23.0.0"
        )
    return spec, problems


def _user_app(app):
    if app is None or app == "" or app == {}:
        return dict(SAMPLE_APP)
    if not isinstance(app, dict):
        raise AnsibleFilterError(
            "flaskfleet_app must be a mapping describing the application (see docs/app-contract.md)"
        )
    return dict(app)


def flaskfleet_app_problems(app, project_root, groups=None) -> list[str]:
    """Every problem of a flaskfleet_app description, each naming the fix ([] = fine)."""
    try:
        user = _user_app(app)
    except AnsibleFilterError as exc:
        return [str(exc)]
    with_workers = bool(groups and list(groups.get("workers") or []))
    return _check(_merge(user), project_root, with_workers)[1]


def flaskfleet_app_contract(app, project_root) -> dict:
    """The complete description of the application (the sample's when ``app`` is empty)."""
    spec, problems = _check(_merge(_user_app(app)), project_root, with_workers=False)
    if problems:
        raise AnsibleFilterError("flaskfleet_app: " + "; ".join(problems))
    return spec


def flaskfleet_app_env(names, wiring, replica_urls_format="joined", extra=None) -> dict:
    """The environment variables the application reads: ``names`` maps wiring values to
    variable names, ``wiring`` holds the values, ``extra`` is added (and wins)."""
    env: dict[str, str] = {}
    for key, name in (names or {}).items():
        if key not in WIRING:
            raise AnsibleFilterError(
                f"app environment: unknown wiring value {key!r} (one of {', '.join(WIRING)})"
            )
        value = wiring.get(key, "")
        if key == "replica_urls":
            urls = [str(u) for u in (value or [])]
            if replica_urls_format == "json":
                env[name] = json.dumps(urls)
            elif replica_urls_format == "numbered":
                for i, url in enumerate(urls, start=1):
                    env[f"{name}_{i}"] = url
            else:
                env[name] = ",".join(urls)
        else:
            env[name] = "" if value is None else str(value)
    for name, value in (extra or {}).items():
        env[str(name)] = "" if value is None else str(value)
    return env


def flaskfleet_database_scheme(url, scheme) -> str:
    """``url`` with its scheme replaced (postgresql+psycopg://... -> <scheme>://...)."""
    if not url:
        return url
    return re.sub(r"^[A-Za-z0-9+.-]+://", f"{scheme}://", str(url), count=1)


class FilterModule:
    def filters(self):
        return {
            "flaskfleet_app_contract": flaskfleet_app_contract,
            "flaskfleet_app_problems": flaskfleet_app_problems,
            "flaskfleet_app_env": flaskfleet_app_env,
            "flaskfleet_database_scheme": flaskfleet_database_scheme,
        }
