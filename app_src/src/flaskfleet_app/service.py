"""Article data access shared by the JSON API and the HTML pages: validation, cached reads
(replica, or primary for read-your-writes), writes on the primary with cache invalidation."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, selectinload

from .metrics import CACHE_RESULTS, DB_READS
from .models import Article, Tag

RYW_COOKIE = "ff_ryw"
MAX_PER_PAGE = 100
FIELDS = {"title", "body", "author", "tags"}


class ValidationError(Exception):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def state():
    return current_app.extensions["flaskfleet"]


# -- read-your-writes --------------------------------------------------------------------------
def _signer() -> TimestampSigner:
    return TimestampSigner(state().settings.secret_key, salt="flaskfleet-ryw")


def ryw_cookie_value() -> str:
    return _signer().sign(b"1").decode()


def set_ryw_cookie(response) -> None:
    """After a write: this client's next reads go to the primary for a few seconds."""
    seconds = state().settings.ryw_seconds
    response.set_cookie(
        RYW_COOKIE, ryw_cookie_value(), max_age=seconds, httponly=True, samesite="Lax"
    )


def wants_primary() -> bool:
    if request.args.get("consistent") in ("1", "true"):
        return True
    cookie = request.cookies.get(RYW_COOKIE)
    if not cookie:
        return False
    try:
        _signer().unsign(cookie, max_age=state().settings.ryw_seconds)
    except (BadSignature, SignatureExpired):
        return False
    return True


# -- validation --------------------------------------------------------------------------------
def _text(data: dict, name: str, errors: dict, max_len: int, required: bool) -> str | None:
    if name not in data:
        if required:
            errors[name] = "is required"
        return None
    value = data[name]
    if not isinstance(value, str):
        errors[name] = f"must be a string, got {type(value).__name__}"
        return None
    value = value.strip()
    if not value:
        errors[name] = "must not be empty"
        return None
    if len(value) > max_len:
        errors[name] = f"must be at most {max_len} characters"
        return None
    return value


def validate_article(data: Any, partial: bool = False) -> dict:
    if not isinstance(data, dict):
        raise ValidationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        errors["unknown"] = f"unknown field(s): {', '.join(unknown)}"
    out: dict[str, Any] = {}
    for name, max_len, required in (("title", 200, True), ("body", 100_000, True)):
        value = _text(data, name, errors, max_len, required and not partial)
        if value is not None:
            out[name] = value
    if "author" in data:
        value = _text(data, "author", errors, 100, False)
        if value is not None:
            out["author"] = value
    elif not partial:
        out["author"] = "anonymous"
    if "tags" in data:
        tags = data["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            errors["tags"] = "must be a list of strings"
        else:
            names = sorted({t.strip().lower() for t in tags if t.strip()})
            if len(names) > 10:
                errors["tags"] = "at most 10 tags"
            elif any(len(n) > 50 for n in names):
                errors["tags"] = "each tag must be at most 50 characters"
            else:
                out["tags"] = names
    elif not partial:
        out["tags"] = []
    if errors:
        raise ValidationError(errors)
    return out


def positive_int_arg(name: str, default: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: f"must be an integer, got {raw!r}"}) from None
    if value < 1:
        raise ValidationError({name: "must be >= 1"})
    if maximum is not None and value > maximum:
        raise ValidationError({name: f"must be <= {maximum}"})
    return value


# -- reads -------------------------------------------------------------------------------------
def _list_query(session: Session, page: int, per_page: int, author: str | None, tag: str | None):
    where = []
    if author:
        where.append(Article.author == author)
    if tag:
        where.append(Article.tags.any(Tag.name == tag.lower()))
    total = session.scalar(select(func.count()).select_from(Article).where(*where)) or 0
    rows = session.scalars(
        select(Article)
        .where(*where)
        .options(selectinload(Article.tags))
        .order_by(Article.created_at.desc(), Article.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    items = []
    for article in rows:
        item = article.to_dict(with_body=False)
        item["excerpt"] = article.body[:200]
        items.append(item)
    return {
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": (total + per_page - 1) // per_page,
    }


def _detail_query(session: Session, article_id: int):
    article = session.scalar(
        select(Article).where(Article.id == article_id).options(selectinload(Article.tags))
    )
    return article.to_dict() if article is not None else None


def cached_read(key: str, fn, confirm_missing: bool = False) -> tuple[Any, str, str]:
    """Returns (payload, "HIT"|"MISS", "primary"|"replica").

    The cache key carries the articles generation, so every write invalidates every view.
    Reads for a client that just wrote (read-your-writes) skip the cache and use the primary.
    With confirm_missing, nothing (None) from a replica is asked again of the primary: a
    replica that lags (for seconds after a promotion, until it follows the new primary) must
    not turn a row that exists into a 404.
    """
    st = state()
    if wants_primary():
        payload, served = st.db.read(fn, primary=True)
        DB_READS.labels(served).inc()
        CACHE_RESULTS.labels("bypass").inc()
        return payload, "MISS", served
    generation = st.cache.generation()
    full_key = f"articles:{generation}:{key}" if generation is not None else None
    if full_key is not None:
        hit = st.cache.get(full_key)
        if isinstance(hit, dict) and "payload" in hit:
            CACHE_RESULTS.labels("hit").inc()
            return hit["payload"], "HIT", hit["db"]
    payload, served = st.db.read(fn)
    if payload is None and confirm_missing and served == "replica":
        payload, served = st.db.read(fn, primary=True)
    DB_READS.labels(served).inc()
    CACHE_RESULTS.labels("miss").inc()
    if full_key is not None and payload is not None:
        st.cache.set(full_key, {"payload": payload, "db": served})
    return payload, "MISS", served


def list_articles(page: int, per_page: int, author: str | None = None, tag: str | None = None):
    key = f"list:{page}:{per_page}:{author or ''}:{(tag or '').lower()}"
    return cached_read(key, lambda s: _list_query(s, page, per_page, author, tag))


def get_article(article_id: int):
    return cached_read(
        f"detail:{article_id}", lambda s: _detail_query(s, article_id), confirm_missing=True
    )


# -- writes ------------------------------------------------------------------------------------
def _tags(session: Session, names: list[str]) -> list[Tag]:
    if not names:
        return []
    session.execute(
        insert(Tag)
        .values([{"name": n} for n in names])
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return list(session.scalars(select(Tag).where(Tag.name.in_(names)).order_by(Tag.name)))


def create_article(data: dict) -> dict:
    st = state()
    with st.db.write() as session:
        article = Article(title=data["title"], body=data["body"], author=data["author"])
        article.tags = _tags(session, data.get("tags", []))
        session.add(article)
        session.flush()
        session.refresh(article, ["created_at", "updated_at"])
        result = article.to_dict()
    st.cache.bump_generation()
    return result


def update_article(article_id: int, data: dict) -> dict | None:
    st = state()
    with st.db.write() as session:
        article = session.scalar(
            select(Article)
            .where(Article.id == article_id)
            .options(selectinload(Article.tags))
            .with_for_update(of=Article)
        )
        if article is None:
            return None
        for name in ("title", "body", "author"):
            if name in data:
                setattr(article, name, data[name])
        if "tags" in data:
            article.tags = _tags(session, data["tags"])
        article.updated_at = func.now()
        session.flush()
        session.refresh(article, ["created_at", "updated_at"])
        result = article.to_dict()
    st.cache.bump_generation()
    return result


def delete_article(article_id: int) -> bool:
    st = state()
    with st.db.write() as session:
        deleted = session.execute(delete(Article).where(Article.id == article_id)).rowcount
    st.cache.bump_generation()
    return bool(deleted)
